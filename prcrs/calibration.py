"""Turning model scores into probabilities: the paper's windowed conversion, isotonic, Platt.

All are fitted on out-of-fold predictions (`scores`, `labels`) and applied to new scores.
"""

from __future__ import annotations

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression


class WindowConversion:
    """The paper's "actual probability": sort the baseline predictions, find the position nearest
    the new prediction, and average the severe labels in a window around it. The half-window is
    `high` positions above 0.8, `low` below 0.3 and `mid` in between (the paper: about 10, 20, 15)."""

    def __init__(self, high: int = 10, mid: int = 15, low: int = 20):
        self.high, self.mid, self.low = high, mid, low

    def fit(self, scores, labels) -> WindowConversion:
        order = np.argsort(scores, kind="stable")
        self.scores_ = np.asarray(scores, float)[order]
        self.labels_ = np.asarray(labels, float)[order]
        return self

    def predict(self, scores) -> np.ndarray:
        scores = np.asarray(scores, float)
        pos = np.clip(np.searchsorted(self.scores_, scores), 0, len(self.scores_) - 1)
        half = np.where(scores > 0.8, self.high, np.where(scores < 0.3, self.low, self.mid))
        lo, hi = np.maximum(pos - half, 0), np.minimum(pos + half + 1, len(self.scores_))
        cumulative = np.r_[0.0, np.cumsum(self.labels_)]
        return (cumulative[hi] - cumulative[lo]) / (hi - lo)


class IsotonicConversion:
    def fit(self, scores, labels) -> IsotonicConversion:
        self.model_ = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(scores, labels)
        return self

    def predict(self, scores) -> np.ndarray:
        return self.model_.predict(np.asarray(scores, float))


class PlattConversion:
    def fit(self, scores, labels) -> PlattConversion:
        self.model_ = LogisticRegression().fit(_logit(scores), labels)
        return self

    def predict(self, scores) -> np.ndarray:
        return self.model_.predict_proba(_logit(scores))[:, 1]


def _logit(p) -> np.ndarray:
    p = np.clip(np.asarray(p, float), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p)).reshape(-1, 1)


CONVERSIONS = {"paper_window": WindowConversion, "isotonic": IsotonicConversion, "platt": PlattConversion}


def cross_fitted(name: str, scores, labels, groups, folds: int = 5, seed: int = 0) -> np.ndarray:
    """Converted probabilities for every row from a conversion fitted on the other groups' rows."""
    from sklearn.model_selection import GroupKFold

    scores, labels = np.asarray(scores, float), np.asarray(labels, int)
    out = np.empty(len(scores))
    for train, test in GroupKFold(folds, shuffle=True, random_state=seed).split(scores, labels, groups):
        out[test] = CONVERSIONS[name]().fit(scores[train], labels[train]).predict(scores[test])
    return out


def cross_fitted_all(scores, labels, groups, seed: int = 0) -> dict[str, np.ndarray]:
    """Every conversion's cross-fitted probabilities (see `cross_fitted`), by name."""
    return {name: cross_fitted(name, scores, labels, groups, seed=seed) for name in CONVERSIONS}


def brier(probabilities, labels) -> float:
    return float(np.mean((np.asarray(probabilities, float) - np.asarray(labels, float)) ** 2))
