"""Networks for tabular rows: TabM (parameter-efficient ensembling; Gorishniy et al., ICLR 2025)
and its plain baseline, an MLP, on piecewise-linear or periodic numerical embeddings
(`rtdl_num_embeddings`), built with the `tabm` package.

A row's values are numbers (x (B, p)); its missing mask enters as one category per factor
(measured or imputed, one-hot). One-day and history inputs alike: p is the run's input columns.
The piecewise-linear bins are quantiles of the rows the network is fitted on: `DeepModel` passes
them as `train_x` (the inner split's training rows, preprocessed) because the class says
`fits_on_training_rows`, so no validation or test row shapes them.

TabM returns every member's logits, (B, k, C): `CRSClassifier` trains the k members on the mean
of their losses and predicts the mean of their probabilities. k = 1 with `arch="tabm-packed"`
(independent weights) is the plain MLP.
"""

from __future__ import annotations

import warnings

import numpy as np
import rtdl_num_embeddings
import tabm
import torch
from torch import nn

EMBEDDINGS = ("none", "piecewise", "periodic")


def quantile_bins(train_x: np.ndarray, n_bins: int) -> list[torch.Tensor]:
    """Bin edges of each column (p lists of increasing edges): `n_bins` quantile bins of the rows
    given (`rtdl_num_embeddings.compute_bins`), fewer where a column has fewer distinct values; a
    column with a single value gets one bin around it. `train_x`: (n, p), no NaN."""
    x = torch.as_tensor(np.asarray(train_x, np.float32))
    n_bins = max(2, min(int(n_bins), len(x) - 1))
    varied = [j for j in range(x.shape[1]) if bool((x[:, j] != x[0, j]).any())]
    bins = dict(zip(varied, rtdl_num_embeddings.compute_bins(x[:, varied], n_bins) if varied else [], strict=True))
    return [bins.get(j, torch.stack([x[0, j] - 1, x[0, j] + 1])) for j in range(x.shape[1])]


def _embedding(kind: str, n_features: int, d_embedding: int, train_x: np.ndarray | None, n_bins: int,
               frequency_scale: float):
    if kind == "none":
        return None
    if kind == "periodic":
        return rtdl_num_embeddings.PeriodicEmbeddings(n_features, d_embedding, frequency_init_scale=frequency_scale,
                                                     lite=False)
    if kind == "piecewise":
        if train_x is None:
            raise ValueError("piecewise-linear embeddings need the training rows (train_x) for their bins")
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*just two bin edges.*")  # a column with one bin
            return rtdl_num_embeddings.PiecewiseLinearEmbeddings(quantile_bins(train_x, n_bins), d_embedding,
                                                                activation=False, version="B")
    raise ValueError(f"embedding must be one of {', '.join(EMBEDDINGS)}, got {kind!r}")


class TabM(nn.Module):
    """TabM over the values' numerical embeddings and the missing mask's categories.

    `k` members (`arch`: "tabm", "tabm-mini" or "tabm-packed"), `blocks` x `d_block` wide,
    `dropout`; `embedding` "piecewise" (`n_bins` quantile bins of `train_x`), "periodic"
    (`frequency_scale`) or "none", each value embedded in `d_embedding` numbers.
    forward: x (B, p), missing (B, p) -> logits (B, k, C).
    """

    fits_on_training_rows = True  # DeepModel passes train_x: the rows it is fitted on

    def __init__(self, n_features: int, n_classes: int = 2, k: int = 32, blocks: int = 2, d_block: int = 256,
                 dropout: float = 0.1, embedding: str = "piecewise", d_embedding: int = 16, n_bins: int = 32,
                 frequency_scale: float = 0.01, arch: str = "tabm", use_mask: bool = True,
                 train_x: np.ndarray | None = None):
        super().__init__()
        self.use_mask = use_mask
        self.net = tabm.TabM.make(
            n_num_features=n_features, cat_cardinalities=[2] * n_features if use_mask else None, d_out=n_classes,
            num_embeddings=_embedding(embedding, n_features, d_embedding, train_x, n_bins, frequency_scale),
            k=k, n_blocks=blocks, d_block=d_block, dropout=dropout, arch_type=arch,
            **({"start_scaling_init": None} if arch == "tabm-packed" else {}))

    def forward(self, x: torch.Tensor, missing: torch.Tensor | None = None) -> torch.Tensor:
        if not self.use_mask:
            return self.net(x)
        if missing is None:
            missing = torch.zeros_like(x)
        return self.net(x, missing.long())
