"""The networks' estimator: a backbone trained through the Lightning module `CRSClassifier`,
behind the scikit-learn contract of `prcrs.models.estimators.CRSModel` (`predict_proba` (n, 2)),
and the freezing of pretrained weights.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.exceptions import MisconfigurationException
from torch import nn

from prcrs.errors import ConfigError, TrainingError
from prcrs.models.classifier import BestWeights, CRSClassifier, LossHistory
from prcrs.models.estimators import CRSModel
from prcrs.models.threads import PREDICT_THREADS
from prcrs.preprocessing import FoldPreprocessor

FREEZE_POLICIES = ("none", "embedding", "backbone")
SPLIT_ROWS = 64  # under `prediction_threads`, a batch is split into parts of at least this many rows
for _name in ("pytorch_lightning", "lightning.pytorch", "lightning.fabric"):  # no GPU/TPU banners per fold
    logging.getLogger(_name).setLevel(logging.WARNING)


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


@contextlib.contextmanager
def torch_threads(n: int):
    """Run with `n` torch threads, then give the process its own count back. A network's numbers
    depend on the count (TabM's predictions too, tests/test_models.py), so a fit and every
    prediction of it use `trainer.threads`, in a fold worker or in a serving process alike."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


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
        with torch_threads(self.threads):
            self._train(Z, missing, y, val)

    def _train(self, Z, missing, y, val):
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
        self.skipped_steps_ = self.module_.skipped_steps
        self.loss_history_ = history.epochs

    def _trainer(self, callbacks: list, validate: bool) -> pl.Trainer:
        """The Lightning Trainer of this schedule, validating every epoch when `validate`."""
        return pl.Trainer(max_epochs=self.max_epochs, min_epochs=min(self.min_epochs, self.max_epochs),
                          accelerator=self.accelerator, devices=self.devices, logger=False,
                          enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                          callbacks=callbacks, deterministic=True, num_sanity_val_steps=0,
                          limit_val_batches=None if validate else 0, gradient_clip_val=self.gradient_clip)

    def _proba(self, Z, missing):
        parts = min(PREDICT_THREADS.get(), len(Z) // SPLIT_ROWS)
        predict = lambda rows: self.module_.predict_proba(torch.from_numpy(Z[rows]),  # noqa: E731
                                                          torch.from_numpy(missing[rows]))[:, -1]
        with torch_threads(self.threads):
            if parts > 1 and not self.module_.training:  # in eval mode throughout: no call switches it
                bounds = np.linspace(0, len(Z), parts + 1).astype(int)
                with ThreadPoolExecutor(parts) as pool:  # torch releases the GIL: the parts run at once
                    proba = np.concatenate(list(pool.map(predict, map(slice, bounds[:-1], bounds[1:]))))
            else:
                proba = predict(slice(None))
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

