"""Squeezeformer building blocks. Tensors are (batch, length, channels) unless stated."""

from __future__ import annotations

import torch
from torch import nn


class FeedForward(nn.Module):
    def __init__(self, d: int, expansion: int = 4, dropout: float = 0.1):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d, d * expansion), nn.SiLU(), nn.Linear(d * expansion, d),
                                 nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SelfAttention(nn.Module):
    def __init__(self, d: int, heads: int = 1, dropout: float = 0.1):
        super().__init__()
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)  # CPU bernoulli is costly: drop outputs only
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.attn(x, x, x, need_weights=False)[0])


class ConvModule(nn.Module):
    """Pointwise to 2d, GLU, depthwise conv, BatchNorm, Swish, pointwise, dropout.

    The pointwise convolutions are `Linear` layers on (B, L, d), the same maps without two
    transposes and the slow small-kernel convolution path on CPU.
    """

    def __init__(self, d: int, kernel: int = 31, dropout: float = 0.1):
        super().__init__()
        self.pointwise_in = nn.Linear(d, 2 * d)
        self.glu = nn.GLU(dim=-1)
        self.depthwise = nn.Conv1d(d, d, kernel, padding=kernel // 2, groups=d)
        self.norm = nn.BatchNorm1d(d)
        self.act = nn.SiLU()
        self.pointwise_out = nn.Linear(d, d)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.glu(self.pointwise_in(x)).transpose(1, 2)
        y = self.act(self.norm(self.depthwise(y))).transpose(1, 2)
        return self.drop(self.pointwise_out(y))


class ScaleBias(nn.Module):
    """Learnable per-channel scale and bias (Squeezeformer's replacement for pre-LN)."""

    def __init__(self, d: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(d))
        self.bias = nn.Parameter(torch.zeros(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.bias


class SqueezeformerBlock(nn.Module):
    """MHSA + FF, then Conv + FF; each module residual, then post-LayerNorm.

    With `scaling`, a ScaleBias sits in front of each module (the Squeezeformer design); without
    it the block is the one in the published PrCRS code.
    """

    def __init__(self, d: int, heads: int = 1, ff_expansion: int = 4, kernel: int = 31, dropout: float = 0.1,
                 scaling: bool = True):
        super().__init__()
        self.modules_ = nn.ModuleList([SelfAttention(d, heads, dropout), FeedForward(d, ff_expansion, dropout),
                                       ConvModule(d, kernel, dropout), FeedForward(d, ff_expansion, dropout)])
        self.norms = nn.ModuleList([nn.LayerNorm(d) for _ in range(4)])
        self.scales = nn.ModuleList([ScaleBias(d) if scaling else nn.Identity() for _ in range(4)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for module, norm, scale in zip(self.modules_, self.norms, self.scales, strict=True):
            x = norm(x + module(scale(x)))
        return x
