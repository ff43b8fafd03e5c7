"""The label-conditional imputation fingerprint, and a fold-safe masker that undoes it.

In the published CAR-T sheet many missing cells were filled with the median of the same CRS
grade: D-dimer is exactly 0.43 on 630 of the 931 grade-0 days and 4.29 on 41 of the 61 grade-3
days. Such a fill value leaks the label into the features.

Detection rule, per column and CRS grade g: the value v most frequent among grade-g days is a
fill value when
  1. it occurs on at least `min_count` grade-g days and on at least `min_share` of them,
  2. at least `min_purity` of all its occurrences in the column are on grade-g days (a plain
     frequent value, e.g. a rounded count, occurs in every grade), and
  3. it lies between the `centre` quantiles of grade g's other values, where a median fill
     would put it (a floor such as tumour burden 0 is not a fill value).
A real measurement that happens to equal a fill value is indistinguishable from it; the masker
treats it as filled too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class FillValue:
    column: str
    grade: int
    value: float
    count: int  # grade-g days holding `value`
    grade_days: int  # all grade-g days


def find_fill_values(
    X: pd.DataFrame,
    grade: np.ndarray,
    min_count: int = 3,
    min_share: float = 0.01,
    min_purity: float = 0.8,
    centre: tuple[float, float] = (0.2, 0.8),
) -> list[FillValue]:
    """Grade-conditional fill values in the columns of `X` (see the module docstring)."""
    grade = np.asarray(grade)
    found = []
    for column in X.columns:
        values = X[column].to_numpy(float)
        for g in np.unique(grade):
            in_grade = values[(grade == g) & ~np.isnan(values)]
            if len(in_grade) < min_count:
                continue
            uniq, counts = np.unique(in_grade, return_counts=True)
            v, n = uniq[counts.argmax()], int(counts.max())
            if n < max(min_count, min_share * len(in_grade)) or n / np.sum(values == v) < min_purity:
                continue
            rest = in_grade[in_grade != v]
            if len(rest) >= 2 and not np.quantile(rest, centre[0]) <= v <= np.quantile(rest, centre[1]):
                continue
            found.append(FillValue(str(column), int(g), float(v), n, int(np.sum(grade == g))))
    return found


def fill_cells(X: pd.DataFrame, grade: np.ndarray, fills: list[FillValue]) -> pd.DataFrame:
    """Boolean frame: True where a cell holds its own grade's fill value (for the audit)."""
    grade = np.asarray(grade)
    out = pd.DataFrame(False, index=X.index, columns=X.columns)
    for f in fills:
        out[f.column] |= (X[f.column].to_numpy() == f.value) & (grade == f.grade)
    return out


class FingerprintMasker:
    """Fitted on training rows (features and their same-day grades), it masks fill values.

    `transform` needs no label: every cell equal to a fill value found in training, in any
    grade, becomes NaN, so test rows are treated alike whatever their outcome.
    """

    def __init__(self, min_count: int = 3, min_share: float = 0.01, min_purity: float = 0.8):
        self.min_count = min_count
        self.min_share = min_share
        self.min_purity = min_purity

    def fit(self, X: pd.DataFrame, grade: np.ndarray) -> "FingerprintMasker":
        self.fills_ = find_fill_values(X, grade, self.min_count, self.min_share, self.min_purity)
        self.values_: dict[str, np.ndarray] = {}
        for f in self.fills_:
            self.values_[f.column] = np.append(self.values_.get(f.column, []), f.value)
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        values = X.to_numpy(float, copy=True)  # numpy, not per-column .loc: one row costs microseconds
        for j, column in enumerate(X.columns):
            fills = self.values_.get(column)
            if fills is not None:
                values[np.isin(values[:, j], fills), j] = np.nan
        return pd.DataFrame(values, index=X.index, columns=X.columns)
