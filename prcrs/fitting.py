"""The one way a model is fitted on a set of rows: inner split, early stopping, threshold.

Cross-validation folds, the platform's final models (`prcrs train-final`), COVID-19 pretraining
and the benchmark all fit through `fit_fold`, so they cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import clone

from prcrs.metrics import best_f1_threshold
from prcrs.splits import inner_split


def severe_probability(model, X: pd.DataFrame) -> np.ndarray:
    """P(severe) of each row of `X`, shape (n,): column 1 of `model.predict_proba` (n, 2)."""
    return model.predict_proba(X)[:, 1]


@dataclass
class Fitted:
    """A model fitted by `fit_fold`, with what its inner validation rows chose."""

    model: object  # a fitted prcrs.models.estimators.CRSModel
    threshold: float | None  # for P/R/F1, sensitivity and specificity; None without one (multi-class)
    val: np.ndarray | None  # the inner validation rows (indices into the data), None without them
    val_proba: np.ndarray | None  # P(positive class) of those rows; None without a threshold


@dataclass(frozen=True)
class InnerSplit:
    """A model's `train_split` (as skorch's): the rows it is fitted on split into (fit,
    validation) positions by patient (`groups`), stratified by each patient's worst `strata`
    value, seeded (`prcrs.splits.inner_split`). `monitor`: the model validates on them (early
    stopping); else they are only held out (for a threshold chosen on them)."""

    val_fraction: float
    seed: int
    monitor: bool = True

    def __call__(self, strata: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        groups = np.asarray(groups)
        return inner_split(np.arange(len(groups)), np.asarray(strata), groups, seed=self.seed,
                           val_fraction=self.val_fraction)


def fit_fold(estimator, X: pd.DataFrame, y: np.ndarray, grade_today: np.ndarray | None, strata: np.ndarray,
             groups: np.ndarray, rows: np.ndarray, *, seed: int, val_fraction: float, early_stopping: bool,
             threshold: str | float | None) -> Fitted:
    """Fit a clone of `estimator` on `rows` (indices into `X`, `y`, ...) and nothing else.

    The clone's `train_split` is an `InnerSplit` of `rows` when `early_stopping` or
    `threshold == "inner"` needs one: early stopping monitors its loss (`monitor`), and the
    threshold is the one of maximal macro F1 on it. Otherwise `threshold` is a fixed number, or
    None (no threshold: a multi-class fit such as COVID-19 pretraining). `grade_today` (same-day
    CRS grades) is what `unimpute="fold"` learns its fill values from; None without it.
    """
    split = InnerSplit(val_fraction, seed, monitor=early_stopping) if early_stopping or threshold == "inner" else None
    model = clone(estimator).set_params(train_split=split).fit(
        X.iloc[rows], y[rows], None if grade_today is None else grade_today[rows], strata=strata[rows],
        groups=groups[rows])
    val = None if model.val_rows_ is None else rows[model.val_rows_]
    if threshold is None:
        return Fitted(model, None, val, None)
    val_proba = None if val is None else severe_probability(model, X.iloc[val])
    chosen = best_f1_threshold(y[val], val_proba) if threshold == "inner" else float(threshold)
    return Fitted(model, chosen, val, val_proba)
