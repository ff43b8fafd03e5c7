"""Estimators the cross-validation calls: the scikit-learn contract they share (`CRSModel`),
tabular models and the bedside scores. The networks' estimator is `prcrs.models.deep.DeepModel`.

Each one owns its fold preprocessing and its inner validation split: `fit(X, y, grade_today,
strata=..., groups=...)` splits off validation rows by its `train_split` (as skorch's; None: no
split), fits the preprocessor on the remaining training rows only, then the model;
`predict_proba(X)` returns P(not severe), P(severe), shape (n, 2), as every scikit-learn
classifier (`severe_probability` takes the second column). `X` is a frame of factor keys with
NaN for missing values.
"""

from __future__ import annotations

import importlib
import warnings

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.linear_model import LogisticRegression

from prcrs.clinical.explain import ColumnEncoding
from prcrs.errors import ConfigError
from prcrs.fitting import severe_probability
from prcrs.models.forests import FORESTS, forest_proba
from prcrs.preprocessing import FoldPreprocessor

IN_DEEP = ("DeepModel", "FREEZE_POLICIES", "check_freeze_policy", "freeze")  # kept resolvable here: see __getattr__


class CRSModel(ClassifierMixin, BaseEstimator):
    """A scikit-learn classifier: `get_params`, `set_params` and `clone` work, `predict_proba`
    is (n, 2) over `classes_` (0 = not severe, 1 = severe), so scikit-learn's calibrators,
    `permutation_importance` and scorers wrap it; its fold preprocessing (`preprocessor`, a
    `FoldPreprocessor`) is one of its parameters, and so is its inner validation split
    (`train_split`: a callable `(strata, groups) -> (fit positions, validation positions)`, such
    as `prcrs.fitting.InnerSplit`; the model validates on those rows, e.g. for early stopping,
    when the split's `monitor` is true). Built from the config (`prcrs.run_config.build_estimator`),
    which holds every default. After `fit`, `val_rows_`: the validation positions, or None."""

    READS_MISSING = True  # `_proba` reads the missing mask (the tabular models read only the values)

    def fit(self, X: pd.DataFrame, y: np.ndarray, grade_today: np.ndarray | None = None, *,
            strata: np.ndarray | None = None, groups: np.ndarray | None = None) -> CRSModel:
        y = np.asarray(y, int)
        split = self.train_split
        fit, val = (np.arange(len(y)), None) if split is None else split(strata, groups)
        self.val_rows_ = val
        self.preprocessor_ = self._fold_preprocessor().fit(X.iloc[fit], None if grade_today is None
                                                           else np.asarray(grade_today)[fit])
        monitored = val is not None and getattr(split, "monitor", True)
        val_inputs = (*self._inputs(X.iloc[val]), y[val]) if monitored else None
        self.classes_ = np.arange(max(2, int(y.max()) + 1))
        self._fit(*self._inputs(X.iloc[fit]), y[fit], val_inputs)
        return self

    def _fold_preprocessor(self) -> FoldPreprocessor:
        """An unfitted copy of the preprocessing this model fits on its training rows."""
        return clone(self.preprocessor)

    def check(self, features: tuple[str, ...]) -> None:
        """Raise ConfigError, naming the option, if this model cannot work on `features` as
        configured; called once before any fold is trained."""

    def _inputs(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        return self.preprocessor_.transform_with_missing(X)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """(P(not severe), P(severe)) of each row, shape (n, 2)."""
        severe = self._proba(*self._inputs(X))
        return np.column_stack([1 - severe, severe])

    def column_encoding(self, columns) -> ColumnEncoding:
        """This fitted model as its fold preprocessing, which maps each input column on its own
        (`FoldPreprocessor`), and the model on what that gives: an explanation composes its
        rows from transformed days instead of transforming every composed row (the same numbers,
        but where a float32 BLAS sum depends on where its input lies in memory: a unit in the last
        place). `columns`: the input frame's columns, of which the model reads its own."""
        features = list(self.preprocessor_.features_)
        where = {c: i for i, c in enumerate(pd.Index(columns).tolist())}
        position = [where[c] for c in features]
        values = position * (2 if self.preprocessor_.missing_indicators else 1)  # indicators follow the values
        if not self.READS_MISSING:
            return ColumnEncoding(lambda X: self._inputs(X[features])[0], np.array(values, int),
                                  lambda Z: self._proba(Z, None))

        def proba(M: np.ndarray) -> np.ndarray:
            Z, missing = M[:, :len(values)], M[:, len(values):]
            return self._proba(np.ascontiguousarray(Z), np.ascontiguousarray(missing))

        return ColumnEncoding(lambda X: np.hstack(self._inputs(X[features])), np.array(values + position, int), proba)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """1 where P(severe) >= 0.5 (the runs' thresholds are chosen apart: `prcrs.fitting`)."""
        return (severe_probability(self, X) >= 0.5).astype(int)

    def _fit(self, Z, missing, y, val):  # pragma: no cover - abstract
        raise NotImplementedError

    def _proba(self, Z, missing) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


class TabularModel(CRSModel):
    """A scikit-learn classifier (`estimator`) on the preprocessed matrix (validation rows unused)."""

    READS_MISSING = False

    def __init__(self, estimator, preprocessor: FoldPreprocessor, train_split=None):
        self.estimator = estimator
        self.preprocessor = preprocessor
        self.train_split = train_split

    def check(self, features):
        """scikit-learn validates a classifier's options when it fits: fit a clone on four rows."""
        toy_X, toy_y = np.zeros((4, max(1, len(features)))), np.array([0, 1, 0, 1])
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                clone(self.estimator).fit(toy_X, toy_y)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"model.estimator.estimator: {str(exc).splitlines()[0]}") from None

    def _fit(self, Z, missing, y, val):
        self.estimator_ = clone(self.estimator).fit(Z, y)

    def _proba(self, Z, missing):
        if isinstance(self.estimator_, FORESTS):
            return forest_proba(self.estimator_, Z)[:, 1]
        return self.estimator_.predict_proba(Z)[:, 1]


class BedsideScore(CRSModel):
    """A simple clinical score on a few labs (`NEEDS`), turned into P(severe) by a logistic fit on
    the training rows: the bar a deep model has to clear. The scores need log values: the
    `preprocessor`'s un-imputation is kept, its scaling replaced by log1p without indicators."""

    NEEDS: tuple[str, ...] = ()
    NAME = ""
    READS_MISSING = False
    standardize = False

    def __init__(self, preprocessor: FoldPreprocessor, train_split=None):
        self.preprocessor = preprocessor
        self.train_split = train_split

    def _fold_preprocessor(self):
        return clone(self.preprocessor).set_params(raw=False, log_skewed=True, standardize=self.standardize,
                                                   missing_indicators=False)

    def check(self, features):
        missing = [k for k in self.NEEDS if k not in features]
        if missing:
            raise ConfigError(f"{self.NAME} needs {', '.join(self.NEEDS)}; this feature set lacks {', '.join(missing)}")

    def fit(self, X, y, grade_today=None, **split):
        self.check(tuple(X.columns))
        return super().fit(X[list(self.NEEDS)], y, grade_today, **split)

    def predict_proba(self, X):
        return super().predict_proba(X[list(self.NEEDS)])

    def _score(self, Z) -> np.ndarray:
        return Z

    def _fit(self, Z, missing, y, val):
        self.calibration_ = LogisticRegression().fit(self._score(Z), y)

    def _proba(self, Z, missing):
        return self.calibration_.predict_proba(self._score(Z))[:, 1]


class MEasix(BedsideScore):
    """m-EASIX = LDH x CRP / platelets; P(severe) by a logistic fit of log m-EASIX."""

    NEEDS = ("ldh", "crp", "platelet")
    NAME = "m-EASIX"

    def _score(self, Z):  # columns are log1p(LDH), log1p(CRP), log1p(platelets)
        return (Z[:, 0] + Z[:, 1] - Z[:, 2]).reshape(-1, 1)


class CytokineLogistic(BedsideScore):
    """A Teachey-style cytokine model (Teachey et al., Cancer Discov 2016): logistic regression on
    log IL-6, IFN-gamma and IL-10, standardized on the training rows."""

    NEEDS = ("il6", "ifn_gamma", "il10")
    NAME = "the cytokine model"
    standardize = True


def __getattr__(name: str):
    """`prcrs.models.estimators.DeepModel` (and its freezing helpers) from `prcrs.models.deep`,
    imported only when asked for: the model configs' `_target_` (part of every run's config
    hash) and models pickled before the split name this module, while a tabular or bedside run
    never imports PyTorch Lightning (about 9 s of start-up on the reference machine)."""
    if name in IN_DEEP:
        return getattr(importlib.import_module("prcrs.models.deep"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
