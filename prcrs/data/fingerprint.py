"""The label-conditional imputation fingerprint of the published sheets, reconstructed exactly.

The PrCRS authors filled every missing cell with "the median value of all of this data contained
in the CRS level": the median of that factor over the days of the same CRS grade (COVID-19:
severity level). Adding copies of a set's median to it leaves the median unchanged, so in the
published sheet each factor's median over grade-g days *is* grade g's fill value. No rule has to
guess which repeated values are fills: they are recomputed.

`fill_values` recomputes them; `FillValueMasker` sets every cell that equals one of its column's
fill values to missing, whatever the row's grade, so masking reads no label. A real measurement
that happens to equal a fill value is masked too (the audit counts these cells).

>>> X = pd.DataFrame({"il6": [1.0, 5.0, 5.0, 9.0, 40.0, 70.0, 70.0]})
>>> grade = np.array([0, 0, 0, 0, 3, 3, 3])
>>> fill_values(X, grade)
{'il6': (5.0, 70.0)}
>>> FillValueMasker(fill_values(X, grade)).fit(X).transform(X)["il6"].tolist()
[1.0, nan, nan, 9.0, 40.0, nan, nan]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

UNIMPUTE = ("sheet", "fold", "none")


def fill_values(X: pd.DataFrame, grade: np.ndarray) -> dict[str, tuple[float, ...]]:
    """Column -> its fill values, sorted: the per-grade medians that occur in their grade.

    `X` (n, p) factor values (NaN = missing, ignored); `grade` (n,) the row's same-day CRS grade
    (or COVID-19 severity). A median that no cell of its grade holds (the mean of the two middle
    values of an even count) cannot be a fill and is left out.
    """
    out: dict[str, set[float]] = {}
    for f in find_fill_values(X, grade):
        out.setdefault(f.column, set()).add(f.value)
    return {column: tuple(sorted(values)) for column, values in out.items()}


@dataclass(frozen=True)
class FillValue:
    """One grade's fill value of one factor, with the cells that hold it."""

    column: str
    grade: int
    value: float
    count: int  # grade-g days holding `value`: its fill cells (and real values equal to it)
    grade_days: int  # all grade-g days
    other: int  # days of other grades holding `value` (masked too, label-free)


def find_fill_values(X: pd.DataFrame, grade: np.ndarray) -> list[FillValue]:
    """Every (column, grade) fill value with the cells holding it (see `fill_values`)."""
    grade = np.asarray(grade)
    found = []
    for column in X.columns:
        values = X[column].to_numpy(float)
        for g in np.unique(grade):
            in_grade = values[(grade == g) & ~np.isnan(values)]
            if not len(in_grade):
                continue
            median = float(np.median(in_grade))
            count = int(np.sum(in_grade == median))
            if count:
                other = int(np.sum((values == median) & (grade != g)))
                found.append(FillValue(str(column), int(g), median, count, int(np.sum(grade == g)), other))
    return found


def fill_cells(X: pd.DataFrame, grade: np.ndarray, fills: list[FillValue]) -> pd.DataFrame:
    """Boolean frame: True where a cell holds its own grade's fill value (for the audit)."""
    grade = np.asarray(grade)
    out = pd.DataFrame(False, index=X.index, columns=X.columns)
    for f in fills:
        out[f.column] |= (X[f.column].to_numpy() == f.value) & (grade == f.grade)
    return out


class FillValueMasker(BaseEstimator, TransformerMixin):
    """Sets cells equal to one of their column's fill values to missing; reads no label.

    `fill_values` given (column -> values, e.g. `Cohort.fill_values` of the whole published
    sheet): `fit` learns nothing. `fill_values=None`: `fit(X, grade)` recomputes them from the
    training rows and their same-day grades (`fill_values_`).
    """

    def __init__(self, fill_values: dict[str, tuple[float, ...]] | None = None):
        self.fill_values = fill_values

    def fit(self, X: pd.DataFrame, grade: np.ndarray | None = None) -> FillValueMasker:
        if self.fill_values is not None:
            self.fill_values_ = dict(self.fill_values)
        elif grade is None:
            raise ValueError("recomputing fill values needs the training rows' same-day CRS grades")
        else:
            self.fill_values_ = fill_values(X, grade)
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        values = X.to_numpy(float, copy=True)  # numpy, not per-column .loc: one row costs microseconds
        for j, column in enumerate(X.columns):
            fills = self.fill_values_.get(column)
            if fills:
                values[np.isin(values[:, j], fills), j] = np.nan
        return pd.DataFrame(values, index=X.index, columns=X.columns)
