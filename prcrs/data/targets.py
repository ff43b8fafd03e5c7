"""Prediction targets: pair the labs of day t with the CRS grade of day t + h."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from prcrs import schema
from prcrs.data.cohort import Cohort
from prcrs.data.history import HistorySpec, baseline_fill_values, history_features
from prcrs.errors import DataError


@dataclass
class HorizonData:
    """Rows of one horizon. All arrays have one entry per usable patient-day (n rows)."""

    X: pd.DataFrame  # (n, p) lab values of day t (feature keys), then any history columns; NaN = missing
    y: np.ndarray  # (n,) 1 if the CRS grade of day t + h is >= 3
    grade_target: np.ndarray  # (n,) CRS grade of day t + h
    grade_today: np.ndarray  # (n,) CRS grade of day t (the row the lab values were taken on)
    patient: np.ndarray  # (n,) patient number
    day: np.ndarray  # (n,) relative day t
    horizon: int
    fill_values: dict[str, tuple[float, ...]]  # the cohort's label-imputation fill values (Cohort.fill_values)
    site: np.ndarray | None = None  # (n,) the row's site, when the cohort has a `site` column

    def __len__(self) -> int:
        return len(self.y)


def check_horizon(horizon) -> int:
    """`horizon` if it is a whole number of days >= 0, else a DataError saying so."""
    if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)) or horizon < 0:
        raise DataError(f"horizon={horizon} must be a whole number of days >= 0 (the paper: 0-3)")
    return int(horizon)


def make_horizon(cohort: Cohort, horizon: int, features: tuple[str, ...] = schema.FEATURE_KEYS,
                 history: HistorySpec | None = None, mask_history: bool = False) -> HorizonData:
    """Features of day t with the grade of day t + `horizon` of the same patient.

    A patient's days without a day t + h (its last h days) drop out. `history` adds the patient's
    past up to day t (`prcrs.data.history`) after the day-t factors; `mask_history` sets the
    label-imputation fill values to missing before it is computed (the honest protocol).
    """
    if cohort.kind != "cart":
        raise DataError("horizons need a CAR-T cohort with daily CRS grades")
    check_horizon(horizon)
    frame = cohort.frame
    columns = list(features)
    if history is not None and history.any:
        grade = frame["grade"].to_numpy(int)
        baseline = baseline_fill_values(frame, grade) if history.baseline and mask_history and cohort.label_imputed \
            else {}
        masked = {**cohort.fill_values, **baseline} if mask_history else None
        past = history_features(frame, features, history, masked)
        frame = pd.concat([frame.reset_index(drop=True), past], axis=1)
        columns += list(past.columns)
    later = frame[["patient", "day", "grade"]].assign(day=frame["day"] - horizon)
    paired = frame.merge(later, on=["patient", "day"], suffixes=("", "_target"), validate="one_to_one")
    if paired.empty:
        longest = int(frame.groupby("patient").size().max())
        raise DataError(f"horizon {horizon} is beyond the data: the longest patient has {longest} days")
    grade_target = paired["grade_target"].to_numpy(int)
    return HorizonData(
        X=paired[columns].reset_index(drop=True),
        y=(grade_target >= schema.SEVERE_GRADE).astype(int),
        grade_target=grade_target,
        grade_today=paired["grade"].to_numpy(int),
        patient=paired["patient"].to_numpy(int),
        day=paired["day"].to_numpy(int),
        horizon=int(horizon),
        fill_values=cohort.fill_values,
        site=paired["site"].astype(str).to_numpy() if "site" in paired.columns else None,
    )
