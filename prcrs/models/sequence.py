"""Networks over a patient's days: the last `window` + 1 days as a sequence.

They read the columns `history=days` makes (`prcrs.data.history`): day t's factors, then the same
factors 1, 2, ..., `window` days before (missing, and flagged by the mask, where that day was not
recorded or came before infusion). `forward(x, missing)` as every backbone: x, missing (B, n)
with n = (window + 1) * p; they are reshaped into (B, window + 1, p), oldest day first.
"""

from __future__ import annotations

import torch
from torch import nn

from prcrs.models.backbones import Head


def day_count(n_features: int, window: int) -> tuple[int, int]:
    """(days, factors per day) of `n_features` inputs over `window` + 1 days; ValueError if the
    inputs are not whole days of the same factors (a history with more than lags)."""
    days = window + 1
    if window < 0 or n_features % days:
        raise ValueError(f"{n_features} inputs are not {days} days of the same factors: sequence networks read "
                         f"history=days (lags only) with model.estimator.backbone.window=history.window")
    return days, n_features // days


def per_day(x: torch.Tensor, missing: torch.Tensor | None, days: int) -> torch.Tensor:
    """(B, days * p) values and mask -> (B, days, 2p), oldest day first."""
    if missing is None:
        missing = torch.zeros_like(x)
    b = x.shape[0]
    seq = torch.cat([x.reshape(b, days, -1), missing.reshape(b, days, -1)], dim=-1)
    return seq.flip(1)  # the columns run day t, t-1, ...: oldest first for the recurrence


class DayGRU(nn.Module):
    """A GRU over days: each day's values and missing mask embedded (`embedding`: Linear, GELU),
    the hidden state after day t into the head."""

    def __init__(self, n_features: int, n_classes: int = 2, window: int = 3, d: int = 32, layers: int = 1,
                 dropout: float = 0.1):
        super().__init__()
        self.days, p = day_count(n_features, window)
        self.embedding = nn.Sequential(nn.Linear(2 * p, d), nn.GELU(), nn.Dropout(dropout))
        self.gru = nn.GRU(d, d, layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)
        self.head = Head(d, n_classes, dropout=dropout)

    def forward(self, x: torch.Tensor, missing: torch.Tensor | None = None) -> torch.Tensor:
        out, _ = self.gru(self.embedding(per_day(x, missing, self.days)))
        return self.head(out[:, -1])


class DayTransformer(nn.Module):
    """Days as tokens: each day's values and mask embedded, plus a learnt embedding of how many
    days before t it is; a pre-norm Transformer encoder; day t's token into the head."""

    def __init__(self, n_features: int, n_classes: int = 2, window: int = 3, d: int = 32, heads: int = 4,
                 layers: int = 2, dropout: float = 0.1):
        super().__init__()
        self.days, p = day_count(n_features, window)
        self.embedding = nn.Linear(2 * p, d)
        self.position = nn.Parameter(torch.zeros(1, self.days, d))
        layer = nn.TransformerEncoderLayer(d, heads, 2 * d, dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.head = Head(d, n_classes, dropout=dropout)

    def forward(self, x: torch.Tensor, missing: torch.Tensor | None = None) -> torch.Tensor:
        tokens = self.embedding(per_day(x, missing, self.days)) + self.position
        return self.head(self.norm(self.encoder(tokens))[:, -1])


class ResidualBlock(nn.Module):
    """ResNet's basic block in 1-D: conv-BN-ReLU-conv-BN plus the input (projected when the
    stride or width changes), ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.body = nn.Sequential(nn.Conv1d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm1d(c_out), nn.ReLU(),
                                  nn.Conv1d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm1d(c_out))
        self.skip = (nn.Identity() if stride == 1 and c_in == c_out else
                     nn.Sequential(nn.Conv1d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm1d(c_out)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.skip(x))


class RCMNet(nn.Module):
    """Our adaptation of RCMNet (a residual CNN feature extractor followed by a Transformer
    encoder, proposed for CAR-T cell images) to daily lab values; there are no images here.

    Each day's factor vector (values and missing mask as two channels) goes through a residual
    1-D CNN along the factor axis (a stem convolution and `blocks` basic blocks, every other one
    halving the length), as ResNet does over an image. The positions of its feature map, for every
    day of the window, become tokens (with learnt position and day embeddings) of a Transformer
    encoder with a class token, as RCMNet feeds the CNN's feature map to its Transformer; the class
    token's output goes to the head. `window=0` is one day.
    """

    def __init__(self, n_features: int, n_classes: int = 2, window: int = 0, d: int = 32, blocks: int = 2,
                 heads: int = 4, layers: int = 1, dropout: float = 0.1):
        super().__init__()
        self.days, p = day_count(n_features, window)
        stem = nn.Sequential(nn.Conv1d(2, d, 3, padding=1, bias=False), nn.BatchNorm1d(d), nn.ReLU())
        cnn = [ResidualBlock(d, d, stride=2 if i % 2 == 0 else 1) for i in range(blocks)]
        self.embedding = nn.Sequential(stem, *cnn)  # the per-day feature extractor
        length = self.embedding(torch.zeros(2, 2, p)).shape[-1]
        self.position = nn.Parameter(torch.zeros(1, 1, length, d))
        self.day = nn.Parameter(torch.zeros(1, self.days, 1, d))
        self.cls = nn.Parameter(torch.zeros(1, 1, d))
        layer = nn.TransformerEncoderLayer(d, heads, 2 * d, dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.head = Head(d, n_classes, dropout=dropout)

    def forward(self, x: torch.Tensor, missing: torch.Tensor | None = None) -> torch.Tensor:
        seq = per_day(x, missing, self.days)  # (B, days, 2p)
        b, days, two_p = seq.shape
        channels = seq.reshape(b * days, 2, two_p // 2)  # values, mask
        features = self.embedding(channels).transpose(1, 2)  # (B * days, L, d)
        tokens = features.reshape(b, days, -1, features.shape[-1]) + self.position + self.day
        tokens = torch.cat([self.cls.expand(b, -1, -1), tokens.reshape(b, -1, tokens.shape[-1])], dim=1)
        return self.head(self.norm(self.encoder(tokens))[:, 0])
