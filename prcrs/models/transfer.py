"""COVID-19 pretraining, cached by config hash, for fine-tuning on CAR-T.

The backbone learns 3-class COVID-19 severity over the CAR-T feature set, with the COVID values
aligned by name and unit by the data layer (`load_covid`). Factors the COVID sheet lacks are
missing in every sample: imputed and flagged by the missing mask the backbone sees. The
pretrained weights are cached under `<cache>/pretrain/<hash>.pt`, so folds and sweeps reuse them.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch

from prcrs import paths
from prcrs.data.cohort import Cohort
from prcrs.models.estimators import DeepModel
from prcrs.preprocessing import FoldPreprocessor
from prcrs.splits import inner_split


def pretrain_key(model: DeepModel, features: tuple[str, ...], covid: Cohort) -> str:
    """Hash of everything that determines the pretrained weights."""
    spec = {"backbone": repr(model.backbone), "optimizer": repr(model.optimizer), "features": list(features),
            "epochs": model.max_epochs, "min_epochs": model.min_epochs, "batch": model.batch_size,
            "patience": model.patience, "seed": model.seed, "clip": model.gradient_clip, "threads": model.threads,
            "scheduler": repr(model.scheduler), "covid": covid.content_id,
            "preprocessor": repr(model.preprocessor)}
    return hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def pretrained_state(model: DeepModel, features: tuple[str, ...], covid: Cohort,
                     cache_dir: Path | None = None) -> dict[str, torch.Tensor]:
    """Weights of `model`'s network pretrained on `covid` severity (0-2), from cache when there."""
    path = Path(cache_dir or paths.home() / ".cache") / "pretrain" / f"{pretrain_key(model, features, covid)}.pt"
    if path.is_file():
        return torch.load(path, weights_only=True)
    frame = covid.frame
    severity = frame["severity"].to_numpy(int)
    patient = frame["patient"].to_numpy()
    fit, val = inner_split(np.arange(len(frame)), severity, patient, seed=model.seed, val_fraction=0.15)
    X = frame[list(features)]
    # the COVID sheet carries the same fingerprint by severity level: its own fill values are masked
    pre = FoldPreprocessor(**{**model.preprocessor.get_params(), "missing_indicators": False,
                              "fill_values": covid.fill_values})
    pretrainer = DeepModel(model.backbone, model.optimizer, model.scheduler, pre, max_epochs=model.max_epochs,
                           batch_size=model.batch_size, patience=model.patience, min_epochs=model.min_epochs,
                           seed=model.seed, threads=model.threads, gradient_clip=model.gradient_clip)
    pretrainer.fit(X.iloc[fit], severity[fit], severity[fit], X.iloc[val], severity[val])
    state = {k: v.detach().clone() for k, v in pretrainer.module_.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    partial_path = path.with_suffix(f".{os.getpid()}.tmp")  # parallel sweeps never read a half-written file
    torch.save(state, partial_path)
    os.replace(partial_path, path)
    return state
