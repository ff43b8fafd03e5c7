"""One Lightning interface for every network: loss, optimizer, metrics, early stopping."""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn
from torch.nn import functional as F


class CRSClassifier(pl.LightningModule):
    """Wraps a backbone `nn.Module` (x (B, p), missing (B, p)) -> logits (B, C).

    Loss: cross-entropy. The optimizer comes from config as a partial (`_target_` + `_partial_`)
    called with the parameters. Logs `train/loss` and `val/loss` (what early stopping and the
    kept epoch monitor).
    """

    def __init__(self, backbone: nn.Module, optimizer: Callable):
        super().__init__()
        self.backbone = backbone
        self.optimizer_factory = optimizer

    def forward(self, x: torch.Tensor, missing: torch.Tensor | None = None) -> torch.Tensor:
        return self.backbone(x, missing)

    def _loss(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        x, missing, y = batch
        logits = self(x, missing)
        return F.cross_entropy(logits, y), logits

    def training_step(self, batch, batch_idx):
        loss, _ = self._loss(batch)
        self.log("train/loss", loss, on_step=False, on_epoch=True, batch_size=len(batch[0]))
        return loss

    def validation_step(self, batch, batch_idx):
        loss, _ = self._loss(batch)
        self.log("val/loss", loss, on_step=False, on_epoch=True, batch_size=len(batch[0]))

    def configure_optimizers(self):
        return self.optimizer_factory(params=self.parameters())

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor, missing: torch.Tensor | None = None,
                      batch_size: int = 4096) -> np.ndarray:
        """Class probabilities (n, C), evaluated in large batches, in eval mode (a fitted model is
        left in eval mode: switching every submodule costs more than a one-row prediction)."""
        was_training = self.training
        if was_training:
            self.eval()
        out = [self(x[i:i + batch_size], None if missing is None else missing[i:i + batch_size]).softmax(-1)
               for i in range(0, len(x), batch_size)]
        if was_training:
            self.train()
        return torch.cat(out).cpu().numpy()


class BestWeights(pl.Callback):
    """Keeps the weights of the epoch with the lowest monitored value in memory; restores them."""

    def __init__(self, monitor: str = "val/loss"):
        self.monitor = monitor
        self.best = float("inf")
        self.best_epoch = -1
        self.state: dict | None = None

    def on_validation_epoch_end(self, trainer, pl_module):
        value = trainer.callback_metrics.get(self.monitor)
        if trainer.sanity_checking or value is None:
            return
        if float(value) < self.best:
            self.best, self.best_epoch = float(value), trainer.current_epoch
            self.state = copy.deepcopy(pl_module.state_dict())

    def on_fit_end(self, trainer, pl_module):
        if self.state is not None:
            pl_module.load_state_dict(self.state)


class LossHistory(pl.Callback):
    """Per epoch, the mean training loss and (when validating) the validation loss:
    `epochs` = [(epoch, train_loss, val_loss or NaN), ...], the learning curves of a fold."""

    def __init__(self):
        self.epochs: list[tuple[int, float, float]] = []

    def on_train_epoch_end(self, trainer, pl_module):
        metrics = trainer.callback_metrics
        train, val = metrics.get("train/loss"), metrics.get("val/loss")
        self.epochs.append((trainer.current_epoch, float("nan") if train is None else float(train),
                            float("nan") if val is None else float(val)))
