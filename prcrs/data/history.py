"""A patient's past as features of day t: lags, day-over-day changes, running extremes, the day
since infusion and the baseline covariates at infusion (the `history` config group).

Everything is computed within a patient from its days up to t: no later day and no CRS grade ever
enters. Days are matched by `day` (days since infusion), not by row order, so a gap in the record
leaves the lag of a missing day missing. Under the honest protocol every cell equal to one of its
column's label-imputation fill values is set to missing *before* any history is computed, so no
lag, change or extreme can carry a fill value (a lag column is not recognisably a fill value
afterwards, and a change would hide one).

    >>> import pandas as pd
    >>> frame = pd.DataFrame({"patient": [0, 0, 0], "day": [0, 1, 3], "il6": [5.0, 50.0, 20.0]})
    >>> history_features(frame, ("il6",), HistorySpec(window=1, extremes=True))
       il6@lag1  il6@max  il6@min
    0       NaN      5.0      5.0
    1       5.0     50.0      5.0
    2       NaN     50.0      5.0
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from prcrs import schema
from prcrs.data.fingerprint import FillValueMasker, fill_values
from prcrs.errors import DataError

BASELINE = ("age", "female", "dose", "blast_pct", "lines_of_therapy")  # known at infusion (day 0)
MASKED_BASELINE = ("age", "dose", "blast_pct", "lines_of_therapy")  # label-imputed like the labs; sex is not
SINCE_INFUSION = "days_since_infusion"


@dataclass(frozen=True)
class HistorySpec:
    """Which history features to add (conf/history/*.yaml); all off is one day, as in the paper.

    window: lags `<factor>@lag1..window`, the factor's value k days before t (missing when that
    day was not recorded). changes: `<factor>@change`, the change from day t-1 to t (of log1p for
    the right-skewed labs: a log ratio). extremes: `<factor>@max`, `<factor>@min` over days 0..t.
    since_infusion: the day t itself. baseline: `<covariate>@infusion`, the day-0 value of age,
    sex, dose, blast fraction and lines of therapy.
    """

    window: int = 0
    changes: bool = False
    extremes: bool = False
    since_infusion: bool = False
    baseline: bool = False

    @property
    def any(self) -> bool:
        """True when a column beyond day t's factors is added."""
        return any(asdict(self).values())

    @property
    def reach(self) -> float:
        """How many days before t the lags, changes and extremes read (inf: every earlier day)."""
        return np.inf if self.extremes else max(self.window, 1 if self.changes else 0)


def _row_keys(frame: pd.DataFrame) -> list[tuple[int, float]]:
    """(patient, day) of each row, the patient as an integer code (equal patients, equal codes)."""
    return list(zip(pd.factorize(frame["patient"])[0].tolist(), frame["day"].tolist(), strict=True))


def _shifted(keys: list[tuple[int, float]], values: pd.DataFrame, days: int) -> pd.DataFrame:
    """`values` of the same patient `days` days earlier, aligned to the rows of `keys`
    (`_row_keys`; NaN if absent); one row per patient-day (`history_features` checks it), so each
    row has at most one."""
    later = {(patient, day + days): i for i, (patient, day) in enumerate(keys)}  # the day each row is `days` before
    earlier = np.array([later.get(key, -1) for key in keys], int)
    out = values.to_numpy(float)[earlier]
    out[earlier < 0] = np.nan
    return pd.DataFrame(out, columns=values.columns)


def history_features(frame: pd.DataFrame, features: tuple[str, ...], spec: HistorySpec,
                     masked_values: dict[str, tuple[float, ...]] | None = None) -> pd.DataFrame:
    """The history columns of every row of `frame` (a cohort frame: patient, day, factors,
    baseline covariates), in `frame`'s row order, index reset.

    `masked_values`: column -> label-imputation fill values set to missing first (the honest
    protocol: `Cohort.fill_values` plus `baseline_fill_values`); None keeps the data as published.
    """
    keys = _row_keys(frame)
    if len(set(keys)) < len(keys):
        raise DataError("a patient has two rows for one day: history needs one row per patient-day")
    absent = [c for c in BASELINE if c not in frame.columns] if spec.baseline else []
    if absent:
        raise DataError(f"history with baseline covariates needs the columns {', '.join(absent)} (at infusion)")
    values = frame[list(features)].reset_index(drop=True)
    if masked_values is not None:
        values = FillValueMasker(masked_values).fit(values).transform(values)
    parts = []
    for k in range(1, spec.window + 1):
        parts.append(_shifted(keys, values, k).add_suffix(f"@lag{k}"))
    if spec.changes:
        skewed = np.array([schema.BY_KEY[f].skewed for f in features], bool)
        scale = values.to_numpy(float, copy=True)
        scale[:, skewed] = np.log1p(scale[:, skewed])
        scale = pd.DataFrame(scale, columns=values.columns)
        parts.append(pd.DataFrame(scale.to_numpy() - _shifted(keys, scale, 1).to_numpy(),
                                  columns=values.columns).add_suffix("@change"))
    if spec.extremes:
        order = np.lexsort((frame["day"].to_numpy(), frame["patient"].to_numpy()))
        ordered = values.iloc[order]
        groups = frame["patient"].to_numpy()[order]
        for name, running in (("max", "cummax"), ("min", "cummin")):
            # cummax leaves NaN where the day's value is missing: the extreme so far carries over
            extreme = getattr(ordered.groupby(groups), running)().groupby(groups).ffill()
            parts.append(extreme.sort_index().add_suffix(f"@{name}"))
    if spec.since_infusion:
        parts.append(pd.DataFrame({SINCE_INFUSION: frame["day"].to_numpy(float)}))
    if spec.baseline:
        base = frame[list(BASELINE)].reset_index(drop=True)
        if masked_values is not None:
            base = FillValueMasker(masked_values).fit(base).transform(base)
        first = frame["day"].to_numpy() == frame.groupby("patient")["day"].transform("min").to_numpy()
        at_infusion = base[first].set_index(frame["patient"].to_numpy()[first])
        parts.append(at_infusion.reindex(frame["patient"].to_numpy()).reset_index(drop=True).add_suffix("@infusion"))
    if not parts:
        return pd.DataFrame(index=range(len(frame)))
    return pd.concat(parts, axis=1)


def baseline_fill_values(frame: pd.DataFrame, grade: np.ndarray) -> dict[str, tuple[float, ...]]:
    """The label-imputation fill values of the baseline covariates that vary within a patient in
    the published sheet (age, dose, blast fraction, lines of therapy: per-grade medians, as for
    the labs); sex never does."""
    return fill_values(frame[list(MASKED_BASELINE)], grade)


def base_factor(column: str) -> str | None:
    """The factor a history column is a value of (lags and extremes), else None (changes, days,
    baseline covariates): `FoldPreprocessor` log-transforms the right-skewed ones."""
    key, _, kind = column.partition("@")
    return key if kind.startswith("lag") or kind in ("max", "min") else None
