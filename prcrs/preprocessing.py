"""Fold-safe preprocessing: fitted on training rows only, applied to any rows without labels."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from prcrs import schema
from prcrs.data.fingerprint import FingerprintMasker


class FoldPreprocessor(BaseEstimator, TransformerMixin):
    """Fingerprint masking, median imputation, log1p of skewed labs, standardization.

    `fit(X, grade_today)` learns everything from the training rows: the fill values to mask
    (which needs their same-day CRS grades), the medians, means and scales. `transform(X)`
    uses no label. Output: float32 array (n, p), or (n, 2p) with `missing_indicators`
    (indicator columns, 1 = missing, follow the values). With `raw=True` (the paper's
    variant) values are neither log-transformed nor scaled; masking stays its own switch.
    """

    def __init__(self, raw: bool = False, mask_fingerprint: bool = True, log_skewed: bool = True,
                 standardize: bool = True, missing_indicators: bool = False):
        self.raw = raw
        self.mask_fingerprint = mask_fingerprint
        self.log_skewed = log_skewed
        self.standardize = standardize
        self.missing_indicators = missing_indicators

    def fit(self, X: pd.DataFrame, grade_today: np.ndarray | None = None) -> FoldPreprocessor:
        self.features_ = list(X.columns)
        self.masker_ = None
        if self.mask_fingerprint:
            if grade_today is None:
                raise ValueError("fingerprint masking needs the training rows' same-day CRS grades")
            self.masker_ = FingerprintMasker().fit(X, grade_today)
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
        if list(X.columns) != self.features_:
            raise ValueError(f"expected columns {self.features_}, got {list(X.columns)}")
        if self.masker_ is not None:
            X = self.masker_.transform(X)
        values = X.to_numpy(float, copy=True)
        if self.log_skewed and not self.raw:
            skewed = [schema.BY_KEY[c].skewed if c in schema.BY_KEY else False for c in self.features_]
            values[:, skewed] = np.log1p(values[:, skewed])
        return values

    def transform_with_missing(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """The transformed values (see `transform`) and the (n, p) float32 mask, 1 where a value
        was missing after fingerprint masking (and was imputed)."""
        values = self._scaled(X)
        missing = np.isnan(values)
        out = (np.where(missing, self.median_, values) - self.mean_) / self.scale_
        if self.missing_indicators:
            out = np.hstack([out, missing])
        return out.astype(np.float32), missing.astype(np.float32)

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        return self.transform_with_missing(X)[0]
