"""Which factors pushed a prediction up or down: Shapley values of factors against a reference
day, for any model (a function from an input frame to P(severe)).

A factor is a player: its value on day t and, for a history model, its lags, changes and extremes
move together (`factor_of`). Absent factors take the reference day's value (`reference_row`: the
training rows' medians as the model reads them), so a factor's contribution is in the units of
the explained probability, and the contributions of a row sum exactly to its prediction minus
the reference day's ("baseline Shapley", Sundararajan & Najmi 2020). With up to 6 factors every
order is enumerated (exact); above, `n_permutations` random orders and their reverses
(antithetic permutation sampling, Strumbelj & Kononenko 2014), the method of
`shap.PermutationExplainer`, here with factor groups and every row's evaluations in one batch
(shap evaluates one row at a time: 0.34 s per row for the platform's forest).

    >>> import numpy as np, pandas as pd
    >>> X = pd.DataFrame({"il6": [100.0], "il6@lag1": [10.0], "crp": [5.0]})
    >>> reference = pd.Series({"il6": 10.0, "il6@lag1": 10.0, "crp": 5.0})
    >>> risk = lambda frame: (0.001 * frame["il6"] + 0.0001 * frame["crp"]).to_numpy()
    >>> contributions(risk, X, reference).round(4)
        il6  crp
    0  0.09  0.0
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from prcrs import schema

EXACT_UP_TO = 6  # factors; above, permutations are sampled
CHUNK_ROWS = 50_000  # model inputs evaluated per call
NOT_MEASURED = "not measured"  # the player of a row's factors with no value: their imputation's effect


@dataclass(frozen=True)
class ColumnEncoding:
    """A model as a transform that reads each input column on its own and a model of its output:
    `proba(transform(X))` is the model's probability of X, and column j of `transform`'s output
    reads only input column `source[j]`, so a row composed of two rows' columns transforms to the
    same composition of their transforms. `transform`: frame (n, columns) -> (n, q) float32;
    `proba`: (m, q) -> (m,)."""

    transform: Callable[[pd.DataFrame], np.ndarray]
    source: np.ndarray  # (q,) input column positions
    proba: Callable[[np.ndarray], np.ndarray]


def factor_of(column: str) -> str:
    """The factor a model input column belongs to: 'il6@lag1', 'il6@change', 'il6@max' -> 'il6';
    a column of no factor ('days_since_infusion', 'age@infusion') is its own."""
    key = column.partition("@")[0]
    return key if key in schema.BY_KEY else column


def reference_row(model, X: pd.DataFrame) -> pd.Series:
    """The reference day: the median of each input column over the training rows `X`, after the
    model's un-imputation (label-imputation fill values read as missing, as the model reads them);
    NaN (missing) where no training value was left."""
    masker = getattr(getattr(model, "preprocessor_", None), "masker_", None)
    return (X if masker is None else masker.transform(X)).median()


def contributions(predict, X: pd.DataFrame, reference: pd.Series, n_permutations: int = 8,
                  seed: int = 0, players: dict[str, str | None] | None = None) -> pd.DataFrame:
    """(n rows, players) contributions of each player to `predict(X)` against `reference`:
    each row sums to predict(row) - predict(reference with the unplayed columns at the row's).
    `predict`: frame -> (n,) probabilities, or its `ColumnEncoding` (faster; the same numbers but
    where a float32 sum depends on where its input lies in memory).
    `players`: column -> its player (default `factor_of`); None: the column is no player and
    keeps the row's value throughout."""
    columns = X.columns.tolist()
    players = {c: factor_of(c) for c in columns} if players is None else players
    factors = list(dict.fromkeys(p for p in (players[c] for c in columns) if p is not None))
    index = {f: i for i, f in enumerate(factors)}
    player = np.array([-1 if players[c] is None else index[players[c]] for c in columns], int)  # -1: no player
    if len(factors) <= EXACT_UP_TO:
        orders = [list(p) for p in itertools.permutations(range(len(factors)))]
    else:
        rng = np.random.default_rng(seed)
        half = [rng.permutation(len(factors)) for _ in range(max(1, n_permutations // 2))]
        orders = [list(o) for p in half for o in (p, p[::-1])]
    n_factors, n_orders = len(factors), len(orders)
    rank = np.argsort(np.array(orders, int).reshape(n_orders, n_factors), axis=1)  # (orders, factors): position
    # (orders, states, columns): state k of an order holds its first k factors, and every column of no player
    present = (player < 0) | (rank[:, np.maximum(player, 0)][:, None, :] < np.arange(n_factors + 1)[None, :, None])
    reference = reference.reindex(columns)
    if isinstance(predict, ColumnEncoding):  # compose the transformed rows: each composed row is not transformed
        x, ref = predict.transform(X), predict.transform(reference.to_frame().T)
        present, evaluate = present[:, :, predict.source], predict.proba
    else:
        x, ref = X.to_numpy(float), reference.to_numpy(float)[None]
        evaluate = lambda rows: predict(pd.DataFrame(rows, columns=columns))  # noqa: E731
    # the composed rows, (rows, orders, states, inputs) in C order: a model's sums may depend on its input's layout
    inputs = np.empty((len(x), n_orders, n_factors + 1, x.shape[1]), np.result_type(x, ref))
    inputs[...] = ref[:, None, None, :]
    np.copyto(inputs, x[:, None, None, :], where=present[None])
    inputs = inputs.reshape(-1, x.shape[1])
    out = np.concatenate([np.asarray(evaluate(inputs[i:i + CHUNK_ROWS]), float)
                          for i in range(0, len(inputs), CHUNK_ROWS)]).reshape(len(X), n_orders, n_factors + 1)
    steps = np.diff(out, axis=2)  # (n, orders, position): the gain of adding the order's k-th factor
    values = np.zeros((len(X), n_factors))
    for j, order in enumerate(orders):
        values[:, order] += steps[:, j, :]
    return pd.DataFrame(values / n_orders, columns=factors, index=X.index)


def contributions_by_measured(predict, X: pd.DataFrame, reference: pd.Series, never: set[str] = frozenset(),
                              **options) -> pd.DataFrame:
    """`contributions` where, in each row, the factors with no value in any of their columns (day t,
    lags, changes: NaN throughout) play together as one player, `NOT_MEASURED`: a factor that was
    not given never appears as if it had been. Factors in `never` (never read) are no players.
    Rows are explained in groups of one pattern of unmeasured factors; (n, players), 0 where a
    row lacks a player."""
    columns = X.columns.tolist()
    factor = {c: factor_of(c) for c in columns}
    codes, factors = pd.factorize(pd.Series([factor[c] for c in columns], dtype=object))
    member = codes[None, :] == np.arange(len(factors))[:, None]  # (factors, columns)
    given = (X.notna().to_numpy()[:, None, :] & member[None]).any(axis=2)  # (rows, factors): any column valued
    patterns, pattern_of = np.unique(given, axis=0, return_inverse=True)
    parts = []
    for k, pattern in enumerate(patterns):
        absent = {f for f, present in zip(factors, pattern, strict=True) if not present}
        players = {c: None if factor[c] in never else NOT_MEASURED if factor[c] in absent else factor[c]
                   for c in columns}
        parts.append(contributions(predict, X.iloc[np.flatnonzero(pattern_of.ravel() == k)], reference,
                                   players=players, **options))
    if len(parts) == 1:  # every row of one pattern (a single day's explanation), in X's order
        return parts[0]
    return pd.concat(parts).fillna(0.0).loc[X.index] if parts else pd.DataFrame(index=X.index)


def top_factors(contribution: np.ndarray, players, values: dict, k: int = 5) -> list[dict]:
    """The `k` largest non-zero contributions of one row (`contribution`: (players,), the
    contributions of `players` in that order), largest magnitude first (ties in player order):
    factor key, its name, the value read (None: not measured on the day) and the contribution;
    `NOT_MEASURED` is the factors not given, together."""
    contribution = np.asarray(contribution, float)
    given = np.flatnonzero(contribution != 0)
    biggest = given[np.argsort(-np.abs(contribution[given]), kind="stable")][:k]
    top = []
    for j in biggest:
        f = players[j]
        read = values.get(f)
        top.append({"factor": f, "name": schema.BY_KEY[f].name if f in schema.BY_KEY else
                    "factors not measured (imputed)" if f == NOT_MEASURED else f,
                    "value": float(f"{read:.4g}") if read is not None and np.isfinite(read) else None,
                    "contribution": float(contribution[j])})
    return top
