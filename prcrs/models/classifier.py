"""One Lightning interface for every network: loss, optimizer, metrics, early stopping."""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn
from torch.nn import functional as F


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Class probabilities (B, C) of logits (B, C), or of an ensemble's logits (B, k, C): the
    mean of its k members' probabilities."""
    proba = logits.softmax(-1)
    return proba.mean(1) if proba.ndim == 3 else proba


class CRSClassifier(pl.LightningModule):
    """Wraps a backbone `nn.Module` (x (B, p), missing (B, p)) -> logits (B, C), or (B, k, C)
    for an ensemble of k members (TabM).

    Loss: cross-entropy; an ensemble trains on the mean of its members' losses, and is validated
    (early stopping, the kept epoch) on the loss of their mean probability, the prediction it
    makes. The optimizer comes from config as a partial (`_target_` + `_partial_`) called with
    the parameters. Logs `train/loss` and `val/loss` (what early stopping and the kept epoch
    monitor). A step whose gradient holds a NaN or an infinity is left out and counted
    (`skipped_steps`).
    """

    def __init__(self, backbone: nn.Module, optimizer: Callable):
        super().__init__()
        self.backbone = backbone
        self.optimizer_factory = optimizer
        self.skipped_steps = 0

    def on_before_optimizer_step(self, optimizer):
        """Leave out a step whose gradient holds a NaN or an infinity, as mixed-precision training
        does: taken, it would turn every weight into NaN for the rest of the fit (raw
        paper-protocol values of 10^5 overflow the attention's float32 gradients). Called after
        the backward pass, before clipping; every other step is taken unchanged."""
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        if grads and not torch.isfinite(torch.nn.utils.get_total_norm(grads, float("inf"))):
            for p in self.parameters():
                p.grad = None  # the optimizer updates no weight and none of its moments
            self.skipped_steps += 1

    def forward(self, x: torch.Tensor, missing: torch.Tensor | None = None) -> torch.Tensor:
        return self.backbone(x, missing)

    def training_step(self, batch, batch_idx):
        x, missing, y = batch
        logits = self(x, missing)
        if logits.ndim == 3:  # k members, each on its own loss: the mean over members and rows
            loss = F.cross_entropy(logits.flatten(0, 1), y.repeat_interleave(logits.shape[1]))
        else:
            loss = F.cross_entropy(logits, y)
        self.log("train/loss", loss, on_step=False, on_epoch=True, batch_size=len(x))
        return loss

    def validation_step(self, batch, batch_idx):
        x, missing, y = batch
        logits = self(x, missing)
        if logits.ndim == 3:  # the ensemble's prediction: its members' mean probability
            loss = F.nll_loss(probabilities(logits).clamp_min(1e-12).log(), y)
        else:
            loss = F.cross_entropy(logits, y)
        self.log("val/loss", loss, on_step=False, on_epoch=True, batch_size=len(x))

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
        out = [probabilities(self(x[i:i + batch_size], None if missing is None else missing[i:i + batch_size]))
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
