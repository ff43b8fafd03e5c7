"""Estimators the cross-validation calls, deep and tabular alike.

Each one owns its fold preprocessing and its inner validation split: `fit(X, y, grade_today,
strata=..., groups=...)` splits off validation rows by its `train_split` (as skorch's; None: no
split), fits the preprocessor on the remaining training rows only, then the model;
`predict_proba(X)` returns P(not severe), P(severe), shape (n, 2), as every scikit-learn
classifier (`severe_probability` takes the second column). `X` is a frame of factor keys with
NaN for missing values.
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.exceptions import MisconfigurationException
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from torch import nn

from prcrs.errors import ConfigError, TrainingError
from prcrs.fitting import severe_probability
from prcrs.models.classifier import BestWeights, CRSClassifier, LossHistory
from prcrs.preprocessing import FoldPreprocessor

FREEZE_POLICIES = ("none", "embedding", "backbone")
FORESTS = (RandomForestClassifier, ExtraTreesClassifier)  # predicted tree by tree (`forest_proba`)
for _name in ("pytorch_lightning", "lightning.pytorch", "lightning.fabric"):  # no GPU/TPU banners per fold
    logging.getLogger(_name).setLevel(logging.WARNING)


class CRSModel(ClassifierMixin, BaseEstimator):
    """A scikit-learn classifier: `get_params`, `set_params` and `clone` work, `predict_proba`
    is (n, 2) over `classes_` (0 = not severe, 1 = severe), so scikit-learn's calibrators,
    `permutation_importance` and scorers wrap it; its fold preprocessing (`preprocessor`, a
    `FoldPreprocessor`) is one of its parameters, and so is its inner validation split
    (`train_split`: a callable `(strata, groups) -> (fit positions, validation positions)`, such
    as `prcrs.fitting.InnerSplit`; the model validates on those rows, e.g. for early stopping,
    when the split's `monitor` is true). Built from the config (`prcrs.run_config.build_estimator`),
    which holds every default. After `fit`, `val_rows_`: the validation positions, or None."""

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

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """1 where P(severe) >= 0.5 (the runs' thresholds are chosen apart: `prcrs.fitting`)."""
        return (severe_probability(self, X) >= 0.5).astype(int)

    def _fit(self, Z, missing, y, val):  # pragma: no cover - abstract
        raise NotImplementedError

    def _proba(self, Z, missing) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


class TabularModel(CRSModel):
    """A scikit-learn classifier (`estimator`) on the preprocessed matrix (validation rows unused)."""

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


def forest_proba(forest, Z: np.ndarray) -> np.ndarray:
    """`forest.predict_proba(Z)` (n, classes), tree by tree in this process: the trees' mean,
    summed in tree order as scikit-learn sums them with one job, so the same numbers. scikit-learn
    dispatches every tree through joblib with its configuration (about 0.1 ms a tree), which for
    a few rows costs more than the trees themselves (one patient-day's prediction and explanation)."""
    Z = np.ascontiguousarray(Z, dtype=np.float32)  # the trees' input type, as predict_proba converts
    proba = np.zeros((len(Z), forest.n_classes_))
    for tree in forest.estimators_:
        proba += tree.predict_proba(Z, check_input=False)
    return proba / len(forest.estimators_)


class BedsideScore(CRSModel):
    """A simple clinical score on a few labs (`NEEDS`), turned into P(severe) by a logistic fit on
    the training rows: the bar a deep model has to clear. The scores need log values: the
    `preprocessor`'s un-imputation is kept, its scaling replaced by log1p without indicators."""

    NEEDS: tuple[str, ...] = ()
    NAME = ""
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


class _Batches(torch.utils.data.IterableDataset):
    """In-memory tensors served as whole batches: no per-sample Python work."""

    def __init__(self, tensors: tuple[torch.Tensor, ...], batch_size: int, shuffle: bool, seed: int):
        self.tensors, self.batch_size, self.shuffle = tensors, batch_size, shuffle
        self.generator = torch.Generator().manual_seed(seed)

    def __iter__(self):
        n = len(self.tensors[0])
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        for i in range(0, n, self.batch_size):
            idx = order[i:i + self.batch_size]
            if self.shuffle and len(idx) < 2:  # BatchNorm needs two rows
                continue
            yield tuple(t[idx] for t in self.tensors)

    def __len__(self):  # must match __iter__: Lightning validates after the len()-th batch
        full, rest = divmod(len(self.tensors[0]), self.batch_size)
        return max(1, full + (rest >= (2 if self.shuffle else 1)))


def _loader(Z, missing, y, batch_size, shuffle, seed):
    tensors = (torch.from_numpy(Z), torch.from_numpy(missing), torch.from_numpy(np.asarray(y, np.int64)))
    return torch.utils.data.DataLoader(_Batches(tensors, batch_size, shuffle, seed), batch_size=None)


def check_freeze_policy(policy: str) -> None:
    if policy not in FREEZE_POLICIES:
        raise ConfigError(f"unknown freeze policy {policy!r} (transfer.freeze); "
                          f"use one of {', '.join(FREEZE_POLICIES)}")


def freeze(module: CRSClassifier, policy: str) -> None:
    """Freeze per `policy`: 'none'; 'embedding' (the published choice); 'backbone' (all but the head)."""
    check_freeze_policy(policy)
    for name, param in module.backbone.named_parameters():
        top = name.split(".")[0]
        frozen = (policy == "embedding" and top == "embedding") or (
            policy == "backbone" and top not in {"head", "fc1", "fc2"})
        param.requires_grad_(not frozen)


class DeepModel(CRSModel):
    """A backbone trained through `CRSClassifier` with a Lightning Trainer.

    `backbone` is a partial taking `n_features` and `n_classes`; `optimizer` a partial taking
    `params`. The schedule (`max_epochs`, `min_epochs`, `batch_size`, `patience`,
    `gradient_clip`) and the Trainer's `accelerator` and `devices` come from the `trainer` config,
    `threads` (torch threads, fixed: results depend on them) too. Early stopping and the kept
    epoch use the validation rows' loss (the inner patient-grouped split); without validation
    rows the last epoch is kept (`BestWeights` keeps the best epoch's weights in memory, not in a
    checkpoint file per fold). `init_from(model)` returns starting weights (COVID-19
    pretraining, `prcrs.models.transfer.Pretraining`), frozen per `freeze`. `callbacks`: more
    Lightning callbacks, copied afresh into every fit.
    """

    def __init__(self, backbone: Callable[..., nn.Module], optimizer: Callable, preprocessor: FoldPreprocessor,
                 max_epochs: int, batch_size: int, patience: int, min_epochs: int, gradient_clip: float | None,
                 seed: int, threads: int, accelerator: str, devices: int | str,
                 init_from: Callable[[DeepModel], dict] | None = None, freeze: str = "none",
                 callbacks: list[pl.Callback] | None = None, train_split=None):
        self.backbone = backbone
        self.optimizer = optimizer
        self.preprocessor = preprocessor
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.patience = patience
        self.min_epochs = min_epochs
        self.gradient_clip = gradient_clip
        self.seed = seed
        self.threads = threads
        self.accelerator = accelerator
        self.devices = devices
        self.init_from = init_from
        self.freeze = freeze
        self.callbacks = callbacks
        self.train_split = train_split

    def check(self, features):
        """The schedule's numbers (trainer.*), then the network built once with its optimizer."""
        for name, least in (("max_epochs", 1), ("batch_size", 2), ("patience", 0), ("min_epochs", 0),
                            ("threads", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ConfigError(f"trainer.{name} must be a whole number >= {least}, got {value!r}")
        if self.gradient_clip is not None and not (isinstance(self.gradient_clip, (int, float))
                                                   and self.gradient_clip >= 0):
            raise ConfigError(f"trainer.gradient_clip must be a number >= 0 or null, got {self.gradient_clip!r}")
        check_freeze_policy(self.freeze)
        try:
            toy = np.random.default_rng(0).normal(size=(64, len(features))).astype(np.float32)  # rows to bin
            self.build(len(features), train_x=toy).configure_optimizers()
        except (TypeError, ValueError, AssertionError) as exc:  # torch's own complaints about options
            raise ConfigError(f"the network or its optimizer cannot be built as configured "
                              f"(model.estimator.backbone.*, optimizer.*): {type(exc).__name__}: {exc}") from None
        try:
            self._trainer(callbacks=[], validate=False)
        except (MisconfigurationException, ValueError, ImportError) as exc:  # an accelerator this machine lacks
            raise ConfigError(f"trainer.accelerator={self.accelerator}, trainer.devices={self.devices}: "
                              f"{str(exc).splitlines()[0]}") from None

    def build(self, n_features: int, n_classes: int = 2, train_x: np.ndarray | None = None) -> CRSClassifier:
        """The network, seeded. A backbone class that `fits_on_training_rows` (numerical
        embeddings' bins) is given `train_x` (n, n_features): the rows it will be fitted on."""
        pl.seed_everything(self.seed, workers=False, verbose=False)
        reads_rows = getattr(getattr(self.backbone, "func", self.backbone), "fits_on_training_rows", False)
        rows = {"train_x": train_x} if reads_rows else {}
        return CRSClassifier(self.backbone(n_features=n_features, n_classes=n_classes, **rows), self.optimizer)

    def _fit(self, Z, missing, y, val):
        torch.set_num_threads(self.threads)  # results depend on the thread count: fix it
        self.module_ = self.build(Z.shape[1], n_classes=max(2, int(y.max()) + 1), train_x=Z)
        if self.init_from is not None:
            own = self.module_.state_dict()  # the pretrained output layer has other classes: not loaded
            state = {k: v for k, v in self.init_from(self).items() if k in own and own[k].shape == v.shape}
            self.module_.load_state_dict(state, strict=False)
            freeze(self.module_, self.freeze)
        best, history = None, LossHistory()
        callbacks = [history, *(copy.deepcopy(c) for c in self.callbacks or ())]  # fresh state in every fit
        if val is not None:
            best = BestWeights("val/loss")
            callbacks += [best, pl.callbacks.EarlyStopping("val/loss", patience=self.patience, mode="min")]
        self.trainer_ = self._trainer(callbacks, validate=val is not None)
        train_loader = _loader(Z, missing, y, self.batch_size, True, self.seed)
        val_loader = None if val is None else _loader(*val, 4096, False, self.seed)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=".*IterableDataset.*__len__.*")
            warnings.filterwarnings("ignore", message=".*LeafSpec.*is deprecated")  # Lightning vs torch 2.13
            warnings.filterwarnings("ignore", message=".*no `val_dataloader`.*")  # no inner split: last epoch kept
            self.trainer_.fit(self.module_, train_loader, val_loader)
        self.module_.cpu().eval()  # predictions and pickles on the CPU, whatever trained it
        self.best_epoch_ = None if best is None else best.best_epoch  # its weights are the module's now
        self.loss_history_ = history.epochs

    def _trainer(self, callbacks: list, validate: bool) -> pl.Trainer:
        """The Lightning Trainer of this schedule, validating every epoch when `validate`."""
        return pl.Trainer(max_epochs=self.max_epochs, min_epochs=min(self.min_epochs, self.max_epochs),
                          accelerator=self.accelerator, devices=self.devices, logger=False,
                          enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                          callbacks=callbacks, deterministic=True, num_sanity_val_steps=0,
                          limit_val_batches=None if validate else 0, gradient_clip_val=self.gradient_clip)

    def _proba(self, Z, missing):
        proba = self.module_.predict_proba(torch.from_numpy(Z), torch.from_numpy(missing))[:, -1]
        if np.isnan(proba).any():
            raise TrainingError(f"{type(self.module_.backbone).__name__} diverged (NaN predictions); "
                                "lower optimizer.lr or standardize the inputs (protocol.raw=false)")
        return proba

    def __getstate__(self):
        """Pickle what predicts: not the trainer, nor the pretraining hook (it holds a cohort)."""
        state = self.__dict__.copy()
        state.pop("trainer_", None)
        state["init_from"] = None
        return state

    @property
    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.module_.parameters())

