"""Cross-validation splits: the paper's row split and the honest patient-grouped split."""

from __future__ import annotations

import contextlib
import logging
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from prcrs.errors import ConfigError

SPLITS = ("row", "patient")
GROUPS = ("patient", "site")  # cv.group: folds over patients (the protocol's split), or one per site
log = logging.getLogger("prcrs")


@dataclass(frozen=True)
class Fold:
    repeat: int
    fold: int
    train: np.ndarray  # row indices
    test: np.ndarray


def worst_grade(grade: np.ndarray, patient: np.ndarray) -> np.ndarray:
    """Each row's patient's worst CRS grade: (n,)."""
    return pd.Series(grade).groupby(np.asarray(patient)).transform("max").to_numpy()


def make_folds(split: str, y: np.ndarray, grade: np.ndarray, patient: np.ndarray,
               folds: int = 5, repeats: int = 1, seed: int = 0, site: np.ndarray | None = None) -> list[Fold]:
    """K folds x R repeats, seeded.

    `row` (the paper's): stratified by the row label `y`, patients ignored, so a patient's days
    land on both sides. `patient`: StratifiedGroupKFold over patients, stratified by each
    patient's worst grade; no patient is on both sides. With `site` (one label per row): one
    fold per site, tested on that site after training on the others (leave-one-site-out; `folds`
    and `repeats` do not apply).
    """
    if site is not None:
        return site_folds(site)
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    n_groups = len(np.unique(patient)) if split == "patient" else len(y)
    if folds < 2 or folds > n_groups or np.sum(y) < folds:
        raise ConfigError(f"cannot make {folds} folds from {n_groups} {split}s with {int(np.sum(y))} positives")
    out = []
    for r in range(repeats):
        if split == "row":
            cv = StratifiedKFold(folds, shuffle=True, random_state=seed + r)
            parts = cv.split(np.zeros(len(y)), y)
        else:
            cv = StratifiedGroupKFold(folds, shuffle=True, random_state=seed + r)
            parts = cv.split(np.zeros(len(y)), worst_grade(grade, patient), groups=patient)
        with _rare_classes_said(folds):
            out.extend(Fold(r, k, np.sort(tr), np.sort(te)) for k, (tr, te) in enumerate(parts))
    return out


def site_folds(site: np.ndarray) -> list[Fold]:
    """Leave-one-site-out folds (scikit-learn's `LeaveOneGroupOut`), in the sites' sorted order."""
    from sklearn.model_selection import LeaveOneGroupOut

    site = np.asarray(site)
    if len(np.unique(site)) < 2:
        raise ConfigError(f"cv.group=site needs at least two sites; the data has {len(np.unique(site))}")
    return [Fold(0, k, np.sort(train), np.sort(test))
            for k, (train, test) in enumerate(LeaveOneGroupOut().split(site, groups=site))]


@contextlib.contextmanager
def _rare_classes_said(n_splits: int):
    """scikit-learn's warning that a class has fewer members than splits (late horizons, small
    cohorts), said once in one line of ours instead of its own with a source line."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        yield
    rare = [w for w in caught if "least populated class" in str(w.message)]
    for w in caught:
        if w not in rare:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if rare:
        log.warning(f"some CRS grades have fewer patients than the {n_splits} folds: the folds are stratified as "
                    "well as they can be, and a fold may hold no severe day")


def inner_split(train: np.ndarray, grade: np.ndarray, patient: np.ndarray, seed: int = 0,
                val_fraction: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """Split training rows into (fit, validation) by patient, stratified by worst grade.

    The validation rows serve early stopping and the choice of threshold; the test fold never
    does. Returns row indices into the full arrays.
    """
    n_splits = max(2, round(1 / val_fraction))
    cv = StratifiedGroupKFold(n_splits, shuffle=True, random_state=seed)
    sub_grade = worst_grade(grade[train], patient[train])
    with _rare_classes_said(n_splits):
        fit, val = next(cv.split(np.zeros(len(train)), sub_grade, groups=patient[train]))
    return train[np.sort(fit)], train[np.sort(val)]
