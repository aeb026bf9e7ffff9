"""SNN -> ANN bridges: spike trains of one window ``[T, B, C, H, W]`` -> dense ``[B, C, H, W]``.

``attention`` (the paper's attention-based bridge, ASAB) = SAT * ERS:

- **SAT**, spatial-aware temporal attention:
  1. channel-wise temporal grouping: ``[T, B, C, H, W] -> [B * C, T, H, W]``; each channel
     becomes one group holding its T time maps;
  2. time-wise separable deformable convolution: a ``K x K`` (K = 5) deformable convolution
     with ``groups = T`` (one kernel per time step, shared by all channel groups), its
     sampling offsets from a small 3x3 convolution of the T maps;
  3. queries, keys, values by 1x1 convolutions over the T maps; attention over the T time
     steps with scores ``q_t . k_s / sqrt(H W)`` (the dot product runs over space: the
     temporal weights depend on where the spikes are);
  4. a 1x1 convolution ``T -> 1`` takes the weighted sum over time: ``[B, C, H, W]``.
- **ERS**, event-rate spatial attention: ``sigmoid(sum_t spikes)`` per channel and pixel,
  no parameters, gates SAT's output.

``naive``: plain accumulation ``sum_t spikes`` (the ablation).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .deform import DeformConv2d


class NaiveBridge(nn.Module):
    """``spikes [T, B, C, H, W] -> sum over T [B, C, H, W]``."""

    def __init__(self, bins: int, channels: int):
        super().__init__()
        self.bins = bins

    def forward(self, spikes: Tensor) -> Tensor:
        return spikes.sum(0)


class SpatialTemporalAttention(nn.Module):
    """SAT (see the module docstring): ``spikes [T, B, C, H, W] -> [B, C, H, W]``."""

    def __init__(self, bins: int, kernel: int = 5):
        super().__init__()
        T = int(bins)
        self.bins = T
        self.deform = DeformConv2d(T, T, kernel, groups=T)
        self.q = nn.Conv2d(T, T, 1)
        self.k = nn.Conv2d(T, T, 1)
        self.v = nn.Conv2d(T, T, 1)
        self.out = nn.Conv2d(T, 1, 1)
        self.reset_to_accumulation()

    @torch.no_grad()
    def reset_to_accumulation(self) -> None:
        """Initialise SAT to the plain accumulation ``sum_t spikes``: the deformable kernels
        are centred deltas, values the identity, queries zero (uniform attention) and the
        output convolution sums over time. Training then departs from the naive bridge."""
        T, K = self.bins, self.deform.kernel
        self.deform.weight.zero_()
        self.deform.weight[:, :, K // 2, K // 2] = 1.0
        self.deform.bias.zero_()
        nn.init.zeros_(self.q.weight)
        nn.init.zeros_(self.q.bias)
        self.v.weight.copy_(torch.eye(T).view(T, T, 1, 1))
        self.v.bias.zero_()
        self.out.weight.fill_(1.0)
        self.out.bias.zero_()

    def group(self, spikes: Tensor) -> Tensor:
        """Channel-wise temporal grouping ``[T, B, C, H, W] -> [B * C, T, H, W]``."""
        T, B, C, H, W = spikes.shape
        if T != self.bins:
            raise ValueError(f"the attention bridge was built for {self.bins} bins, got {T}")
        return spikes.permute(1, 2, 0, 3, 4).reshape(B * C, T, H, W)

    def forward(self, spikes: Tensor) -> Tensor:
        T, B, C, H, W = spikes.shape
        g = self.deform(self.group(spikes))                    # [B C, T, H, W]
        q = self.q(g).flatten(2)                               # [B C, T, H W]
        k = self.k(g).flatten(2)
        v = self.v(g).flatten(2)
        att = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(H * W), dim=-1)   # [B C, T, T]
        y = (att @ v).view(B * C, T, H, W)
        return self.out(y).view(B, C, H, W)


def event_rate_gate(spikes: Tensor) -> Tensor:
    """ERS: ``sigmoid(sum_t spikes)``, ``[T, B, C, H, W] -> [B, C, H, W]``."""
    return torch.sigmoid(spikes.sum(0))


class AttentionBridge(nn.Module):
    """SAT gated by ERS: ``spikes [T, B, C, H, W] -> [B, C, H, W]``."""

    def __init__(self, bins: int, channels: int, kernel: int = 5):
        super().__init__()
        self.bins = bins
        self.sat = SpatialTemporalAttention(bins, kernel)

    def forward(self, spikes: Tensor) -> Tensor:
        return self.sat(spikes) * event_rate_gate(spikes)


BRIDGES = {"attention": AttentionBridge, "naive": NaiveBridge}


def build_bridge(kind: str, bins: int, channels: int) -> nn.Module:
    """``"attention"`` (SAT + ERS) or ``"naive"`` for ``bins`` time steps."""
    if kind not in BRIDGES:
        raise ValueError(f"unknown bridge {kind!r}; choose one of {sorted(BRIDGES)}")
    return BRIDGES[kind](bins, channels)
