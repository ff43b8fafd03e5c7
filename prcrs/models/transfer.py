"""COVID-19 pretraining, cached by a hash of what determines it, for fine-tuning on CAR-T.

The backbone learns 3-class COVID-19 severity over the CAR-T feature set, with the COVID values
aligned by name and unit by the data layer (`load_covid`). Factors the COVID sheet lacks are
missing in every sample: imputed and flagged by the missing mask the backbone sees. The
pretrained weights are cached under `<cache>/pretrain/<hash>.pt`, so folds and sweeps reuse them.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from sklearn.base import BaseEstimator, clone

from prcrs import paths
from prcrs.data.cohort import Cohort
from prcrs.errors import TrainingError
from prcrs.fitting import fit_fold
from prcrs.models.deep import DeepModel


def _spec(value):
    """`value` as JSON-able data, in full: an estimator as its class and parameters."""
    if isinstance(value, BaseEstimator):
        return {"class": type(value).__name__, **{k: _spec(v) for k, v in value.get_params(deep=False).items()}}
    if isinstance(value, dict):
        return {str(k): _spec(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_spec(v) for v in value]
    return value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)


@dataclass
class Pretraining:
    """`DeepModel.init_from`: the weights of the model's network pretrained on 3-class COVID-19
    severity (0-2) over `features`, fitted by `prcrs.fitting.fit_fold` with early stopping on a
    patient-grouped validation split of `val_fraction` (`transfer.val_fraction`); cached under
    `<cache_dir>/pretrain/<key>.pt`, so folds and sweeps reuse them. A sequence network (a
    backbone with a `window`) is pretrained on single COVID-19 samples as a window of one day:
    its per-day encoder and its sequence layers carry over, its day embeddings do not (their
    shape differs, so they are not loaded)."""

    features: tuple[str, ...]
    covid: Cohort
    val_fraction: float
    cache_dir: Path | None = None  # None: <PRCRS home>/.cache

    def key(self, model: DeepModel) -> str:
        """Hash of everything that determines the pretrained weights: every parameter of `model`
        but its transfer settings and inner split, the features, the split, the COVID data's content and the code
        that trains (`code_fingerprint`): weights cached by other code are never reused."""
        from prcrs.code_fingerprint import code_fingerprint

        params = {k: v for k, v in model.get_params(deep=False).items()
                  if k not in ("init_from", "freeze", "train_split")}  # the pretraining makes its own split
        spec = {"model": _spec(params), "features": list(self.features), "val_fraction": self.val_fraction,
                "covid": self.covid.content_id, "code": code_fingerprint()}
        return hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]

    def __call__(self, model: DeepModel) -> dict[str, torch.Tensor]:
        path = Path(self.cache_dir or paths.home() / ".cache") / "pretrain" / f"{self.key(model)}.pt"
        if path.is_file():
            return torch.load(path, weights_only=True)
        failed = path.with_suffix(".diverged")  # a pretraining that diverged, kept as such: not tried per fold
        if failed.is_file():
            raise TrainingError(failed.read_text())
        frame = self.covid.frame
        severity = frame["severity"].to_numpy(int)
        # the COVID sheet carries the same fingerprint by severity level: its own fill values are masked
        pre = clone(model.preprocessor).set_params(missing_indicators=False, fill_values=self.covid.fill_values)
        backbone = model.backbone
        if "window" in getattr(backbone, "keywords", {}):  # a sequence network: pretrained on single days
            backbone = partial(backbone.func, *backbone.args, **{**backbone.keywords, "window": 0})
        pretrainer = clone(model).set_params(preprocessor=pre, init_from=None, freeze="none", backbone=backbone)
        fitted = fit_fold(pretrainer, frame[list(self.features)], severity, severity, severity,
                          frame["patient"].to_numpy(), np.arange(len(frame)), seed=model.seed,
                          val_fraction=self.val_fraction, early_stopping=True, threshold=None)
        state = {k: v.detach().clone() for k, v in fitted.model.module_.state_dict().items()}
        path.parent.mkdir(parents=True, exist_ok=True)
        if any(v.is_floating_point() and not torch.isfinite(v).all() for v in state.values()):
            failed.write_text("the COVID-19 pretraining diverged (NaN weights, not used): lower optimizer.lr or "
                              "standardize the inputs (protocol.raw=false)")
            raise TrainingError(failed.read_text())
        partial_path = path.with_suffix(f".{os.getpid()}.tmp")  # parallel sweeps never read a half-written file
        torch.save(state, partial_path)
        os.replace(partial_path, path)
        return state
