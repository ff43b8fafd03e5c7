"""Forest probabilities computed in this process, with the numbers of scikit-learn's
`predict_proba` (the trees' mean, summed in tree order as scikit-learn sums them with one job).

scikit-learn dispatches every tree through joblib with its configuration (about 0.1 ms a tree),
and each tree's `predict_proba` checks that it is fitted (about 25 µs): for a few rows that costs
more than the trees themselves (one patient-day's prediction and explanation). `forest_proba`
checks the forest once, then
- a few rows (at most `FEW_ROWS`) go down every tree at once: the trees' nodes stacked into one
  set of arrays (`StackedTrees`, built once per forest), a level per step;
- more rows go through each fitted tree's structure (`tree_`), `BLOCK_ROWS` rows at a time, so
  that every tree reads a block while it is in the cache; blocks run on `prediction_threads`
  threads (default 1: the fold workers already share the cores).

    >>> import numpy as np
    >>> from sklearn.ensemble import RandomForestClassifier
    >>> X = np.random.default_rng(0).normal(size=(60, 3)); y = (X[:, 0] > 0).astype(int)
    >>> forest = RandomForestClassifier(10, random_state=0).fit(X, y)
    >>> bool((forest_proba(forest, X[:3]) == forest.predict_proba(X[:3])).all())
    True
"""

from __future__ import annotations

import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier

from prcrs.models.threads import PREDICT_THREADS

FORESTS = (RandomForestClassifier, ExtraTreesClassifier)  # predicted by `forest_proba`
BLOCK_ROWS = 2048  # rows every tree predicts before the next block: they stay in cache (about 3x faster)
FEW_ROWS = 16  # up to this many rows, every tree at once (`StackedTrees`): about 7x faster for one row
_STACKED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # forest -> (its trees, their StackedTrees)


@dataclass(frozen=True)
class StackedTrees:
    """The nodes of a forest's trees in one set of arrays (a leaf is its own child), for sending a
    few rows down every tree at once. Arrays of (nodes,); `value`: (nodes, classes)."""

    roots: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    missing_left: np.ndarray  # where a missing value goes, as the tree learned (or was told)
    left: np.ndarray
    right: np.ndarray
    value: np.ndarray
    depth: int

    @classmethod
    def of(cls, forest) -> StackedTrees:
        trees = [t.tree_ for t in forest.estimators_]
        roots = np.cumsum([0] + [t.node_count for t in trees])[:-1]
        left, right = (np.concatenate([np.where(getattr(t, side) >= 0, getattr(t, side) + r, -1)
                                       for t, r in zip(trees, roots, strict=True)])
                       for side in ("children_left", "children_right"))
        leaf = np.flatnonzero(left < 0)
        left[leaf], right[leaf] = leaf, leaf
        return cls(roots, np.concatenate([np.maximum(t.feature, 0) for t in trees]),
                   np.concatenate([t.threshold for t in trees]),
                   np.concatenate([t.missing_go_to_left.astype(bool) for t in trees]), left, right,
                   np.concatenate([t.value[:, 0, :forest.n_classes_] for t in trees]), max(t.max_depth for t in trees))

    def proba(self, Z: np.ndarray) -> np.ndarray:
        """(n, classes): the trees' mean for float32 rows `Z` (n, features), as `Tree.predict`
        routes a row (x <= threshold goes left; a missing x goes where the node says)."""
        node = np.broadcast_to(self.roots, (len(Z), len(self.roots))).copy()  # (rows, trees)
        rows = np.arange(len(Z))[:, None]
        for _ in range(self.depth):
            x = Z[rows, self.feature[node]]
            go_left = np.where(np.isnan(x), self.missing_left[node], x <= self.threshold[node])
            node = np.where(go_left, self.left[node], self.right[node])
        return self.value[node].cumsum(axis=1)[:, -1] / len(self.roots)  # summed in tree order


def _stacked(forest) -> StackedTrees:
    """The forest's `StackedTrees`, built again whenever its trees are not those it was built from
    (a forest fitted again, or grown with `warm_start`)."""
    trees = tuple(forest.estimators_)
    cached = _STACKED.get(forest)
    if cached is None or len(cached[0]) != len(trees) or any(a is not b for a, b in zip(cached[0], trees, strict=True)):
        cached = _STACKED[forest] = (trees, StackedTrees.of(forest))
    return cached[1]


def forest_proba(forest, Z: np.ndarray) -> np.ndarray:
    """`forest.predict_proba(Z)` (n, classes), with its numbers (see the module)."""
    Z = np.ascontiguousarray(Z, dtype=np.float32)  # the trees' input type, as predict_proba converts
    if Z.ndim != 2 or Z.shape[1] != forest.n_features_in_ or forest.n_outputs_ != 1:
        return forest.predict_proba(Z)  # scikit-learn's own error, or its multi-output path
    if len(Z) <= FEW_ROWS:
        return _stacked(forest).proba(Z)
    n_classes = forest.n_classes_
    proba = np.zeros((len(Z), n_classes))

    def block(start: int) -> None:
        rows, total = Z[start:start + BLOCK_ROWS], proba[start:start + BLOCK_ROWS]
        for tree in forest.estimators_:
            total += tree.tree_.predict(rows)[:, :n_classes]

    starts, threads = range(0, len(Z), BLOCK_ROWS), min(PREDICT_THREADS.get(), -(-len(Z) // BLOCK_ROWS))
    if threads > 1:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(block, starts))
    else:
        for start in starts:
            block(start)
    return proba / len(forest.estimators_)
