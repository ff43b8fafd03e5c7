"""Metrics of one fold, named as scikit-learn's cv_results_ (`test_auroc`, ...)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    precision_recall_fscore_support,
    roc_auc_score,
)

METRICS = ("auroc", "auprc", "brier", "precision_macro", "recall_macro", "f1_macro", "sensitivity",
           "specificity")


def auroc(y, scores) -> float:
    """Area under the ROC curve of `scores` (n,) for 0/1 labels `y` (n,); NaN when `y` holds one
    class (a fold or resample without a severe day)."""
    return float(roc_auc_score(y, scores)) if len(np.unique(y)) == 2 else float("nan")


def auprc(y, scores) -> float:
    """Average precision of `scores` (n,) for 0/1 labels `y` (n,); NaN when `y` holds one class."""
    return float(average_precision_score(y, scores)) if len(np.unique(y)) == 2 else float("nan")


def _tie_groups(y, scores, weights, descending: bool) -> tuple[np.ndarray, np.ndarray]:
    """Positive and negative weight (k, groups) of each group of tied scores, groups in score
    order; `weights` (k, n) (a patient bootstrap's multiplicities), or (n,)."""
    y, s = np.asarray(y, int) == 1, np.asarray(scores, float)
    w = np.atleast_2d(np.asarray(weights, float))
    order = np.argsort(-s if descending else s, kind="stable")
    ranked = s[order]
    starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])
    w = w[:, order]
    return np.add.reduceat(w * y[order], starts, axis=1), np.add.reduceat(w * ~y[order], starts, axis=1)


def weighted_auroc(y, scores, weights) -> np.ndarray:
    """(k,) AUROC of `scores` (n,) for labels `y` (n,) under each row of `weights` (k, n): what
    `roc_auc_score(y, scores, sample_weight=w)` gives for each row w, ties counting half, in one
    pass for all rows (a patient bootstrap's resamples); NaN where a row weighs one class only.

    >>> float(weighted_auroc([0, 1, 0, 1], [0.1, 0.4, 0.5, 0.8], [[1, 1, 1, 1]])[0])
    0.75
    """
    pos, neg = _tie_groups(y, scores, weights, descending=False)
    below = np.cumsum(neg, axis=1) - neg
    n_pos, n_neg = pos.sum(1), neg.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        area = (pos * (below + 0.5 * neg)).sum(1) / (n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), area, np.nan)


def weighted_auprc(y, scores, weights) -> np.ndarray:
    """(k,) average precision of `scores` (n,) for labels `y` (n,) under each row of `weights`
    (k, n): `average_precision_score(y, scores, sample_weight=w)` for each row w, in one pass;
    NaN where a row weighs one class only."""
    pos, neg = _tie_groups(y, scores, weights, descending=True)
    tp, fp = np.cumsum(pos, axis=1), np.cumsum(neg, axis=1)
    n_pos, n_neg = tp[:, -1], fp[:, -1]
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        area = (pos / n_pos[:, None] * precision).sum(1)  # recall steps by pos / n_pos at each threshold
    return np.where((n_pos > 0) & (n_neg > 0), area, np.nan)


def fold_metrics(y: np.ndarray, proba: np.ndarray, threshold: float) -> dict[str, float]:
    """Threshold-free and thresholded metrics of P(severe) `proba` (n,) against labels `y` (n,)."""
    y = np.asarray(y, int)
    pred = (np.asarray(proba) >= threshold).astype(int)
    p, r, f1, _ = precision_recall_fscore_support(y, pred, average="macro", labels=[0, 1], zero_division=0)
    return {
        "auroc": auroc(y, proba),
        "auprc": auprc(y, proba),
        "brier": float(brier_score_loss(y, proba, pos_label=1)),
        "precision_macro": float(p), "recall_macro": float(r), "f1_macro": float(f1),
        "sensitivity": float(np.mean(pred[y == 1] == 1)) if (y == 1).any() else float("nan"),
        "specificity": float(np.mean(pred[y == 0] == 0)) if (y == 0).any() else float("nan"),
    }


def best_f1_threshold(y: np.ndarray, proba: np.ndarray) -> float:
    """Threshold maximizing macro F1 on (validation) rows; 0.5 when they hold one class only.

    Candidates are the distinct probabilities and 0.5; the lowest of tied ones wins. Every
    candidate is scored at once from cumulative counts (macro F1 as scikit-learn's, with
    zero_division=0).
    """
    y, proba = np.asarray(y, int), np.asarray(proba, float)
    if len(np.unique(y)) < 2:
        return 0.5
    candidates = np.unique(np.concatenate([proba, [0.5]]))
    pos, neg = np.sort(proba[y == 1]), np.sort(proba[y == 0])
    tp = len(pos) - np.searchsorted(pos, candidates, side="left")  # predicted 1 = proba >= threshold
    fp = len(neg) - np.searchsorted(neg, candidates, side="left")
    fn, tn = len(pos) - tp, len(neg) - fp

    def f1(hit, wrong_in, wrong_out):
        denominator = 2 * hit + wrong_in + wrong_out
        return np.divide(2 * hit, denominator, out=np.zeros(len(candidates)), where=denominator > 0)

    return float(candidates[int(np.argmax((f1(tp, fp, fn) + f1(tn, fn, fp)) / 2))])
