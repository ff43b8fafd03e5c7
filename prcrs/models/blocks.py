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


BANDED_FROM_KERNEL = 15  # a depthwise kernel this long runs as banded matrices (measured on CPU:
# kernel 31 over 19 positions 5x faster than the convolution; kernel 7 over 21 slower)


def banded_depthwise(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """`conv` (depthwise: groups = channels) of x (B, d, L) as one (L_out, L) banded matrix per
    channel, built from its weights: the same map as `conv(x)`, a batched matrix product."""
    k, pad, stride = conv.kernel_size[0], conv.padding[0], conv.stride[0]
    length = x.shape[-1]
    out = (length + 2 * pad - k) // stride + 1
    tap = torch.arange(length)[None, :] - (torch.arange(out)[:, None] * stride - pad)  # (L_out, L): weight index
    w = conv.weight[:, 0, :]  # (d, k)
    band = torch.where((tap >= 0) & (tap < k), w[:, tap.clamp(0, k - 1)], w.new_zeros(()))  # (d, L_out, L)
    return torch.einsum("bdl,dol->bdo", x, band) + conv.bias[:, None]


class ConvModule(nn.Module):
    """Pointwise to 2d, GLU, depthwise conv, BatchNorm, Swish, pointwise, dropout.

    The pointwise convolutions are `Linear` layers on (B, L, d), the same maps without two
    transposes and the slow small-kernel convolution path on CPU; a long depthwise kernel runs
    as banded matrices (`banded_depthwise`).
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
        y = banded_depthwise(self.depthwise, y) if self.depthwise.kernel_size[0] >= BANDED_FROM_KERNEL else \
            self.depthwise(y)
        y = self.act(self.norm(y)).transpose(1, 2)
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
