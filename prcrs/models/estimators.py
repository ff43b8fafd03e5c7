"""Estimators the cross-validation calls, deep and tabular alike.

Each one owns its fold preprocessing: `fit(X, y, grade_today, X_val, y_val)` fits the
preprocessor on the training rows only, then the model; `predict_proba(X)` returns P(severe),
shape (n,). `X` is a frame of factor keys with NaN for missing values.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from functools import partial

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from torch import nn

from prcrs.errors import ConfigError, TrainingError
from prcrs.models.classifier import BestWeights, CRSClassifier
from prcrs.preprocessing import FoldPreprocessor

FREEZE_POLICIES = ("none", "embedding", "backbone")
for _name in ("pytorch_lightning", "lightning.pytorch", "lightning.fabric"):  # no GPU/TPU banners per fold
    logging.getLogger(_name).setLevel(logging.WARNING)


class CRSModel:
    def __init__(self, preprocessor: FoldPreprocessor | None = None):
        self.preprocessor = preprocessor if preprocessor is not None else FoldPreprocessor()

    def fit(self, X: pd.DataFrame, y: np.ndarray, grade_today: np.ndarray | None = None,
            X_val: pd.DataFrame | None = None, y_val: np.ndarray | None = None) -> CRSModel:
        self.preprocessor_ = clone(self.preprocessor).fit(X, grade_today)
        val = None if X_val is None else (*self._inputs(X_val), np.asarray(y_val, int))
        self._fit(*self._inputs(X), np.asarray(y, int), val)
        return self

    def check(self, features: tuple[str, ...]) -> None:
        """Raise ConfigError, naming the option, if this model cannot work on `features` as
        configured; called once before any fold is trained."""

    def _inputs(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        return self.preprocessor_.transform_with_missing(X)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return self._proba(*self._inputs(X))

    def _fit(self, Z, missing, y, val):  # pragma: no cover - abstract
        raise NotImplementedError

    def _proba(self, Z, missing) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


class TabularModel(CRSModel):
    """A scikit-learn classifier on the preprocessed matrix (validation rows unused)."""

    def __init__(self, estimator, preprocessor: FoldPreprocessor | None = None):
        super().__init__(preprocessor)
        self.estimator = estimator

    def check(self, features):
        validate = getattr(clone(self.estimator), "_validate_params", None)  # scikit-learn's own check
        if validate is not None:
            try:
                validate()
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"model.estimator.estimator: {exc}") from None

    def _fit(self, Z, missing, y, val):
        self.estimator_ = clone(self.estimator).fit(Z, y)

    def _proba(self, Z, missing):
        return self.estimator_.predict_proba(Z)[:, 1]


class MEasix(CRSModel):
    """m-EASIX = LDH x CRP / platelets; P(severe) by a logistic fit of log m-EASIX on training rows."""

    NEEDS = ("ldh", "crp", "platelet")

    def __init__(self, preprocessor: FoldPreprocessor | None = None):
        pre = preprocessor if preprocessor is not None else FoldPreprocessor()
        super().__init__(clone(pre).set_params(raw=False, log_skewed=True, standardize=False,
                                               missing_indicators=False))  # the score needs log values

    def check(self, features):
        missing = [k for k in self.NEEDS if k not in features]
        if missing:
            raise ConfigError(f"m-EASIX needs LDH, CRP and platelets; this feature set lacks {', '.join(missing)}")

    def fit(self, X, y, grade_today=None, X_val=None, y_val=None):
        self.check(tuple(X.columns))
        return super().fit(X[list(self.NEEDS)], y, grade_today)

    def predict_proba(self, X):
        return super().predict_proba(X[list(self.NEEDS)])

    @staticmethod
    def _score(Z):  # columns are log1p(LDH), log1p(CRP), log1p(platelets)
        return (Z[:, 0] + Z[:, 1] - Z[:, 2]).reshape(-1, 1)

    def _fit(self, Z, missing, y, val):
        self.calibration_ = LogisticRegression().fit(self._score(Z), y)

    def _proba(self, Z, missing):
        return self.calibration_.predict_proba(self._score(Z))[:, 1]


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


def freeze(module: CRSClassifier, policy: str) -> None:
    """Freeze per `policy`: 'none'; 'embedding' (the published choice); 'backbone' (all but the head)."""
    if policy not in FREEZE_POLICIES:
        raise ConfigError(f"unknown freeze policy {policy!r}; use one of {', '.join(FREEZE_POLICIES)}")
    for name, param in module.backbone.named_parameters():
        top = name.split(".")[0]
        frozen = (policy == "embedding" and top == "embedding") or (
            policy == "backbone" and top not in {"head", "fc1", "fc2"})
        param.requires_grad_(not frozen)


class DeepModel(CRSModel):
    """A backbone trained through `CRSClassifier` with Lightning.

    `backbone` is a partial taking `n_features` and `n_classes`; `optimizer` a partial taking
    `params`. Early stopping and the kept epoch use the validation rows' loss (the inner
    patient-grouped split); without validation rows the last epoch is kept.
    """

    def __init__(self, backbone: Callable[..., nn.Module], optimizer: Callable | None = None,
                 scheduler: Callable | None = None, preprocessor: FoldPreprocessor | None = None,
                 max_epochs: int = 60, batch_size: int = 64, patience: int = 10, min_epochs: int = 3,
                 class_weights: list[float] | None = None, seed: int = 0, threads: int = 2,
                 init_from: Callable[[], dict] | None = None, freeze: str = "none", gradient_clip: float = 1.0):
        super().__init__(preprocessor)
        self.backbone = backbone
        self.optimizer = optimizer or partial(torch.optim.AdamW, lr=1e-3, weight_decay=1e-2, foreach=True)
        self.scheduler = scheduler
        self.max_epochs, self.batch_size, self.patience, self.min_epochs = max_epochs, batch_size, patience, min_epochs
        self.class_weights, self.seed, self.threads = class_weights, seed, threads
        self.init_from, self.freeze, self.gradient_clip = init_from, freeze, gradient_clip

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
        try:
            self.build(len(features)).configure_optimizers()
        except Exception as exc:  # the backbone's or optimizer's own complaint, about its options
            raise ConfigError(f"the network or its optimizer cannot be built as configured "
                              f"(model.estimator.backbone.*, optimizer.*): {type(exc).__name__}: {exc}") from None

    def build(self, n_features: int, n_classes: int = 2) -> CRSClassifier:
        pl.seed_everything(self.seed, workers=False, verbose=False)
        return CRSClassifier(self.backbone(n_features=n_features, n_classes=n_classes), self.optimizer,
                             self.scheduler, self.class_weights)

    def _fit(self, Z, missing, y, val):
        torch.set_num_threads(self.threads)  # results depend on the thread count: fix it
        self.module_ = self.build(Z.shape[1], n_classes=max(2, int(y.max()) + 1))
        if self.init_from is not None:
            own = self.module_.state_dict()  # the pretrained output layer has other classes: not loaded
            state = {k: v for k, v in self.init_from().items() if k in own and own[k].shape == v.shape}
            self.module_.load_state_dict(state, strict=False)
            freeze(self.module_, self.freeze)
        self.trainer_, best = train_module(self.module_, Z, missing, y, val, self.max_epochs, self.batch_size,
                                           self.patience, self.min_epochs, self.seed, self.gradient_clip)
        self.best_epoch_ = None if best is None else best.best_epoch  # its weights are the module's now

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


def train_module(module: CRSClassifier, Z, missing, y, val, max_epochs: int, batch_size: int, patience: int,
                 min_epochs: int, seed: int, gradient_clip: float | None = 1.0
                 ) -> tuple[pl.Trainer, BestWeights | None]:
    """Fit `module` on in-memory arrays; early stopping on `val` = (Z, missing, y) when given."""
    callbacks, best = [], None
    if val is not None:
        best = BestWeights("val/loss")
        callbacks = [best, pl.callbacks.EarlyStopping("val/loss", patience=patience, mode="min")]
    trainer = pl.Trainer(max_epochs=max_epochs, min_epochs=min(min_epochs, max_epochs), accelerator="cpu",
                         devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=callbacks, deterministic=True,
                         num_sanity_val_steps=0, limit_val_batches=0 if val is None else None,
                         gradient_clip_val=gradient_clip)
    train_loader = _loader(Z, missing, y, batch_size, True, seed)
    val_loader = None if val is None else _loader(*val, 4096, False, seed)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*IterableDataset.*__len__.*")
        warnings.filterwarnings("ignore", message=".*LeafSpec.*is deprecated")  # Lightning vs torch 2.13
        warnings.filterwarnings("ignore", message=".*no `val_dataloader`.*")  # no inner split: last epoch kept
        trainer.fit(module, train_loader, val_loader)
    return trainer, best
