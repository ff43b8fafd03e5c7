"""Fold-safe preprocessing: fitted on training rows only, applied to any rows without labels."""

from __future__ import annotations

import copy
import functools

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from prcrs import schema
from prcrs.data.fingerprint import UNIMPUTE, FillValueMasker
from prcrs.data.history import base_factor


class FoldPreprocessor(BaseEstimator, TransformerMixin):
    """Un-imputation, median imputation, log1p of skewed labs, standardization.

    Un-imputation sets the label-imputation fill values back to missing (`prcrs.data.fingerprint`):
    `unimpute="sheet"` masks the given `fill_values` (those of the whole published sheet),
    `"fold"` recomputes them in `fit` from the training rows and their same-day grades, `"none"`
    keeps the data as published. `fit(X, grade_today)` learns the rest from the training rows:
    the medians, means and scales. `transform(X)` uses no label. Output: float32 array (n, p),
    or (n, 2p) with `missing_indicators` (indicator columns, 1 = missing, follow the values).
    With `raw=True` (the paper's variant) values are neither log-transformed nor scaled;
    un-imputation stays its own switch.
    """

    def __init__(self, raw: bool = False, unimpute: str = "fold", fill_values: dict | None = None,
                 log_skewed: bool = True, standardize: bool = True, missing_indicators: bool = False):
        self.raw = raw
        self.unimpute = unimpute
        self.fill_values = fill_values
        self.log_skewed = log_skewed
        self.standardize = standardize
        self.missing_indicators = missing_indicators

    def fit(self, X: pd.DataFrame, grade_today: np.ndarray | None = None) -> FoldPreprocessor:
        self.features_ = list(X.columns)
        if self.unimpute not in UNIMPUTE:
            raise ValueError(f"unimpute={self.unimpute!r}; use one of {', '.join(UNIMPUTE)}")
        if self.unimpute == "sheet" and self.fill_values is None:
            raise ValueError("unimpute='sheet' needs the sheet's fill_values")
        self.masker_ = None
        if self.unimpute != "none":
            sheet = self.fill_values if self.unimpute == "sheet" else None
            self.masker_ = FillValueMasker(sheet).fit(X, grade_today)
        values = self._scaled(X)
        self.median_ = pd.DataFrame(values).median().fillna(0.0).to_numpy()  # all-missing -> 0
        filled = np.where(np.isnan(values), self.median_, values)
        use_scale = self.standardize and not self.raw
        self.mean_ = filled.mean(0) if use_scale else np.zeros(len(self.features_))
        scale = filled.std(0) if use_scale else np.ones(len(self.features_))
        self.scale_ = np.where(scale > 1e-8, scale, 1.0)
        return self

    def _scaled(self, X: pd.DataFrame) -> np.ndarray:
        """Masked and (optionally) log-transformed values, NaN kept: (n, p) float64."""
        if X.columns.tolist() != self.features_:
            raise ValueError(f"expected columns {self.features_}, got {list(X.columns)}")
        if self.masker_ is not None:
            X = self.masker_.transform(X)
        values = X.to_numpy(float, copy=True)
        if self.log_skewed and not self.raw:
            skewed = [_skewed(c) for c in self.features_]
            values[:, skewed] = np.log1p(values[:, skewed])
        return values

    def transform_with_missing(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """The transformed values (see `transform`) and the (n, p) float32 mask, 1 where a value
        was missing after un-imputation (and was imputed)."""
        values = self._scaled(X)
        missing = np.isnan(values)
        out = (np.where(missing, self.median_, values) - self.mean_) / self.scale_
        if self.missing_indicators:
            out = np.hstack([out, missing])
        return out.astype(np.float32), missing.astype(np.float32)

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        return self.transform_with_missing(X)[0]

    def measured(self) -> FoldPreprocessor:
        """A copy of this fitted preprocessing that masks no fill value: for new patients, whose
        values are measurements. The fill values are a property of the published training sheet
        (its missing cells were filled with them), not of a new patient's labs."""
        out = copy.copy(self)
        out.masker_ = None
        return out


@functools.cache
def _skewed(column: str) -> bool:
    """A right-skewed lab's column: its day-t value, a lag or a running extreme of it."""
    key = column if column in schema.BY_KEY else base_factor(column)
    return key is not None and schema.BY_KEY[key].skewed
