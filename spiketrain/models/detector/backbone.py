"""Spiking backbone: Conv3x3-Norm-PLIF blocks stepped over time bins.

Default channels 64-128-256-256, strides 2-2-2-1 (output at stride 8). The state is the
tuple of the blocks' membrane maps ``(v_1, ..., v_4)``, ``v_k [B, C_k, H_k, W_k]``; one
step maps an event histogram bin ``x_t [B, 2, H, W]`` to the last block's spikes
``[B, C_4, H_4, W_4]``.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from .plif import PLIF, make_norm

DEFAULT_CHANNELS = (64, 128, 256, 256)
DEFAULT_STRIDES = (2, 2, 2, 1)


def conv_out(size: int, stride: int, kernel: int = 3, padding: int = 1) -> int:
    """Output length of a convolution along one axis."""
    return (size + 2 * padding - kernel) // stride + 1


class SpikingBlock(nn.Module):
    """Conv3x3 (no bias) -> norm -> PLIF. Stateless: ``(v, x) -> (v_new, spikes)``."""

    def __init__(self, c_in: int, c_out: int, stride: int, norm: str = "batch",
                 init_tau: float = 2.0, v_threshold: float = 1.0, surrogate: str = "atan"):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=norm == "none")
        self.norm = make_norm(norm, c_out)
        self.plif = PLIF(init_tau, v_threshold, 0.0, surrogate)

    def current(self, x: Tensor) -> Tensor:
        """Input current ``x [B, C_in, H, W] -> [B, C_out, H', W']``."""
        return self.norm(self.conv(x))

    def forward(self, v: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.plif(v, self.current(x))


class SpikingBackbone(nn.Module):
    """Four (by default) spiking blocks. ``step(state, x_t [B, C_in, H, W]) -> (state,
    spikes [B, C_out, H', W'])``; ``state_shapes`` gives each membrane's ``[C, H, W]``."""

    def __init__(self, in_channels: int = 2, input_size: Sequence[int] = (64, 64),
                 channels: Sequence[int] = DEFAULT_CHANNELS,
                 strides: Sequence[int] = DEFAULT_STRIDES, norm: str = "batch",
                 init_tau: float = 2.0, v_threshold: float = 1.0, surrogate: str = "atan"):
        super().__init__()
        if len(channels) != len(strides):
            raise ValueError(f"channels {tuple(channels)} and strides {tuple(strides)} differ in length")
        self.blocks = nn.ModuleList()
        h, w = int(input_size[0]), int(input_size[1])
        self.state_shapes: list[tuple[int, int, int]] = []
        c_prev = in_channels
        for c, s in zip(channels, strides):
            self.blocks.append(SpikingBlock(c_prev, int(c), int(s), norm, init_tau, v_threshold,
                                            surrogate))
            h, w = conv_out(h, s), conv_out(w, s)
            self.state_shapes.append((int(c), h, w))
            c_prev = int(c)
        self.out_channels = c_prev
        self.stride = 1
        for s in strides:
            self.stride *= int(s)

    def init_state(self, batch_size: int, like: Tensor) -> tuple[Tensor, ...]:
        """Zero membranes ``v_k [B, C_k, H_k, W_k]`` (dtype/device of ``like``)."""
        return tuple(like.new_zeros((batch_size,) + shp) for shp in self.state_shapes)

    def step(self, state: tuple[Tensor, ...], x_t: Tensor, keep_spikes: bool = False):
        """One bin through every block. Returns ``(state, spikes of the last block)``, or
        with ``keep_spikes`` ``(state, [spikes of every block])``."""
        new, spikes = [], []
        inp = x_t
        for block, v in zip(self.blocks, state):
            v, inp = block(v, inp)
            new.append(v)
            spikes.append(inp)
        return tuple(new), (spikes if keep_spikes else inp)

    @torch.no_grad()
    def spike_rates(self, x: Tensor) -> list[float]:
        """Fraction of neuron-steps that spike in each block for ``x [T, B, C_in, H, W]``."""
        state = self.init_state(x.shape[1], x)
        totals = [0.0] * len(self.blocks)
        for x_t in x.unbind(0):
            state, spikes = self.step(state, x_t, keep_spikes=True)
            for k, s in enumerate(spikes):
                totals[k] += float(s.mean())
        return [t / x.shape[0] for t in totals]
