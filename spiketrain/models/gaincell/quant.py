"""Quantisers of the gain-cell attention: DAC/ADC levels in the forward, straight-through
gradients in the backward.

Leroux et al. (2025), Methods "Hardware constraints": queries are applied by 4-bit DACs
(16 levels on [0, 1]), keys and values are written as 3-bit charges (8 levels on
[0, 0.9] V) and each array's output is read by a 5-bit ADC (32 levels on [-1, 1]).

A quantiser first clamps into its range (ordinary clamp gradient: zero outside the range)
and then rounds to the grid ``k * step`` with ``step = (hi - lo) / (levels - 1)``: the grid
is anchored at 0, so 0 is always representable. Rounding uses the straight-through
estimator: its backward passes the gradient unchanged. Grid points outside ``[lo, hi]``
are never produced (the nearest grid point inside is taken): ``[0, 1]`` with 16 levels gives
``{0, 1/15, ..., 1}``, ``[0, 0.9]`` with 8 levels ``{0, 0.9/7, ..., 0.9}``, and ``[-1, 1]``
with 32 levels the 31 points ``{-15, ..., 15} * 2/31`` (an even count of levels cannot be
symmetric about an anchored 0).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


class _RoundSTE(torch.autograd.Function):
    """``round(x / step) * step`` with indices clamped to ``[k_lo, k_hi]``; identity backward."""

    @staticmethod
    def forward(ctx, x: Tensor, step: float, k_lo: int, k_hi: int) -> Tensor:
        return torch.round(x / step).clamp_(k_lo, k_hi) * step

    @staticmethod
    def backward(ctx, g: Tensor):
        return g, None, None, None


@dataclass(frozen=True)
class Quantizer:
    """Clamp to ``[lo, hi]`` then round to ``levels`` grid steps (straight-through).

    ``enabled=False`` keeps the clamp (the hardware range) and skips the rounding.
    """

    lo: float
    hi: float
    levels: int
    enabled: bool = True

    @property
    def step(self) -> float:
        return (self.hi - self.lo) / (self.levels - 1)

    def grid(self) -> Tensor:
        """All values this quantiser can produce, ascending (float64)."""
        k_lo, k_hi = self._k_range()
        return torch.arange(k_lo, k_hi + 1, dtype=torch.float64) * self.step

    def _k_range(self) -> tuple[int, int]:
        eps = 1e-9
        return math.ceil(self.lo / self.step - eps), math.floor(self.hi / self.step + eps)

    def __call__(self, x: Tensor) -> Tensor:
        x = x.clamp(self.lo, self.hi)
        if not self.enabled:
            return x
        k_lo, k_hi = self._k_range()
        if torch.is_grad_enabled() and x.requires_grad:
            return _RoundSTE.apply(x, self.step, k_lo, k_hi)
        return x.div_(self.step).round_().clamp_(k_lo, k_hi).mul_(self.step)  # same values, in place

    def off(self) -> "Quantizer":
        return Quantizer(self.lo, self.hi, self.levels, False)


def quantize(x: Tensor, lo: float, hi: float, levels: int) -> Tensor:
    """Functional form of :class:`Quantizer` (clamp, round to the grid, straight-through)."""
    return Quantizer(lo, hi, levels)(x)


# The three converters of the paper's circuit (see the module docstring).
Q_DAC = Quantizer(0.0, 1.0, 16)        # query pulses, 4 bits
KV_CELL = Quantizer(0.0, 0.9, 8)       # key / value charge, 3 bits
OUT_ADC = Quantizer(-1.0, 1.0, 32)     # per-array output, 5 bits
