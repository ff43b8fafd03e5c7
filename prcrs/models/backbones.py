"""Networks mapping lab values (batch, n_features) [+ missing mask] to class logits (batch, C).

Every backbone takes `forward(x, missing=None)`: `x` float (B, p), `missing` float (B, p) with
1 where the value was missing (and imputed). With `use_mask`, the mask is a second input channel
(or, for the token transformer, a learnt embedding), so a model pretrained on COVID-19, where the
CAR-T-only factors are absent, can tell absent from normal.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from prcrs.models.blocks import SqueezeformerBlock


def _channels(x: torch.Tensor, missing: torch.Tensor | None, use_mask: bool) -> torch.Tensor:
    """(B, p) values [+ mask] -> (B, 1 or 2, p)."""
    if not use_mask:
        return x.unsqueeze(1)
    if missing is None:
        missing = torch.zeros_like(x)
    return torch.stack([x, missing], dim=1)


class Head(nn.Module):
    def __init__(self, d: int, n_classes: int, hidden: int = 16, dropout: float = 0.1):
        super().__init__()
        self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class CNN(nn.Module):
    """1-D CNN along the feature axis (each sample is a sequence of its p values)."""

    def __init__(self, n_features: int, n_classes: int = 2, channels: int = 32, dropout: float = 0.2,
                 use_mask: bool = True):
        super().__init__()
        self.use_mask = use_mask
        self.embedding = nn.Conv1d(2 if use_mask else 1, channels, 3, padding=1)
        self.body = nn.Sequential(nn.BatchNorm1d(channels), nn.ReLU(),
                                  nn.Conv1d(channels, 2 * channels, 3, padding=1), nn.BatchNorm1d(2 * channels),
                                  nn.ReLU(), nn.Conv1d(2 * channels, 2 * channels, 3, padding=1), nn.ReLU())
        self.head = Head(2 * channels, n_classes, dropout=dropout)

    def forward(self, x: torch.Tensor, missing: torch.Tensor | None = None) -> torch.Tensor:
        h = self.body(self.embedding(_channels(x, missing, self.use_mask)))
        return self.head(h.mean(-1))


class TokenTransformer(nn.Module):
    """One token per feature: value embedding + feature-identity embedding (+ missing embedding)."""

    def __init__(self, n_features: int, n_classes: int = 2, d: int = 32, heads: int = 4, layers: int = 2,
                 dropout: float = 0.1, use_mask: bool = True):
        super().__init__()
        self.use_mask = use_mask
        self.value = nn.Parameter(torch.randn(n_features, d) * 0.1)
        self.embedding = nn.Embedding(n_features, d)
        self.missing = nn.Parameter(torch.zeros(d))
        layer = nn.TransformerEncoderLayer(d, heads, 2 * d, dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.head = Head(d, n_classes, dropout=dropout)

    def forward(self, x: torch.Tensor, missing: torch.Tensor | None = None) -> torch.Tensor:
        tokens = x.unsqueeze(-1) * self.value + self.embedding.weight
        if self.use_mask and missing is not None:
            tokens = tokens + missing.unsqueeze(-1) * self.missing
        return self.head(self.norm(self.encoder(tokens)).mean(1))


class ConvEmbedding(nn.Module):
    """Conv1d over the feature vector: (B, c_in, p) -> sequence (B, L, d), L = ceil(p / stride)."""

    def __init__(self, c_in: int, d: int, kernel: int = 5, stride: int = 2, padding: int | None = None):
        super().__init__()
        self.conv = nn.Conv1d(c_in, d, kernel, stride, kernel // 2 if padding is None else padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(x)).transpose(1, 2)


def _length(p: int, kernel: int, stride: int, padding: int) -> int:
    return (p + 2 * padding - kernel) // stride + 1


class Squeezeformer(nn.Module):
    """Conv embedding, learnt positions, Squeezeformer blocks (scaling + post-LN), mean pool."""

    def __init__(self, n_features: int, n_classes: int = 2, d: int = 32, heads: int = 4, blocks: int = 2,
                 kernel: int = 7, dropout: float = 0.1, use_mask: bool = True):
        super().__init__()
        self.use_mask = use_mask
        self.embedding = ConvEmbedding(2 if use_mask else 1, d, stride=1)
        self.position = nn.Parameter(torch.zeros(1, n_features, d))
        self.blocks = nn.Sequential(*[SqueezeformerBlock(d, heads, 4, kernel, dropout) for _ in range(blocks)])
        self.head = Head(d, n_classes, dropout=dropout)

    def forward(self, x: torch.Tensor, missing: torch.Tensor | None = None) -> torch.Tensor:
        h = self.embedding(_channels(x, missing, self.use_mask)) + self.position
        return self.head(self.blocks(h).mean(1))


class PrCRS(nn.Module):
    """The architecture the paper describes: a Squeezeformer with a temporal U-Net.

    Conv1d embedding into a sequence of L = ceil(p/2) positions; `outer` blocks at full length;
    the sequence halved (strided depthwise conv), `middle` blocks; brought back to L (nearest
    upsampling) and added to the skip from before the reduction; `outer` blocks; mean pool; head.
    """

    def __init__(self, n_features: int, n_classes: int = 2, d: int = 32, heads: int = 4, outer: int = 1,
                 middle: int = 1, kernel: int = 7, dropout: float = 0.1, use_mask: bool = True):
        super().__init__()
        self.use_mask = use_mask
        self.embedding = ConvEmbedding(2 if use_mask else 1, d, kernel=5, stride=2)
        length = _length(n_features, 5, 2, 2)
        self.position = nn.Parameter(torch.zeros(1, length, d))

        def stack(n: int) -> nn.Sequential:
            return nn.Sequential(*[SqueezeformerBlock(d, heads, 4, kernel, dropout) for _ in range(n)])

        self.down_blocks, self.middle_blocks, self.up_blocks = stack(outer), stack(middle), stack(outer)
        self.reduce = nn.Conv1d(d, d, 3, stride=2, padding=1, groups=d)
        self.head = Head(d, n_classes, dropout=dropout)

    def forward(self, x: torch.Tensor, missing: torch.Tensor | None = None) -> torch.Tensor:
        h = self.down_blocks(self.embedding(_channels(x, missing, self.use_mask)) + self.position)
        skip, length = h, h.shape[1]
        h = self.reduce(h.transpose(1, 2)).transpose(1, 2)
        h = self.middle_blocks(h)
        h = F.interpolate(h.transpose(1, 2), size=length, mode="nearest").transpose(1, 2)
        return self.head(self.up_blocks(h + skip).mean(1))


class PrCRSPaper(nn.Module):
    """The published network: Conv1d(1, 64, 5, stride 2) + ReLU, one Squeezeformer block without
    scaling (1 head, FF x4, depthwise kernel 31), mean pool, Linear(64, 16), Linear(16, C).
    42 features give a sequence of 19 positions. The missing mask is not an input."""

    def __init__(self, n_features: int, n_classes: int = 2, d: int = 64, dropout: float = 0.1):
        super().__init__()
        if n_features < 5:
            raise ValueError(f"prcrs_paper needs at least 5 features, got {n_features}")
        self.use_mask = False
        self.embedding = ConvEmbedding(1, d, kernel=5, stride=2, padding=0)
        self.block = SqueezeformerBlock(d, heads=1, ff_expansion=4, kernel=31, dropout=dropout, scaling=False)
        self.fc1 = nn.Linear(d, 16)
        self.fc2 = nn.Linear(16, n_classes)

    def forward(self, x: torch.Tensor, missing: torch.Tensor | None = None) -> torch.Tensor:
        return self.fc2(self.fc1(self.block(self.embedding(x.unsqueeze(1))).mean(1)))
