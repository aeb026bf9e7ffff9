"""Parametric LIF (PLIF, Fang et al. 2021) and the per-step batch norm of the spiking backbone.

PLIF, one step (decay-input form, hard reset)::

    H_t = V_{t-1} + (X_t - (V_{t-1} - V_reset)) / tau      1/tau = sigmoid(w), w learnable
    S_t = Heaviside(H_t - V_th)                             (surrogate gradient in backward)
    V_t = H_t (1 - S_t) + V_reset S_t

Normalisation choice (documented, see :class:`StepBatchNorm`): the paper's blocks are
Conv-BN-PLIF. A BatchNorm that updates running statistics inside ``step`` is not pure:
under checkpointing every recomputed step would update them again. Here each step is
normalised with the batch statistics of that step (over batch and space, per channel),
in training *and* evaluation, and no running statistic exists at all. ``step`` is then a
pure function of (parameters, state, x_t), so every memory strategy recomputes it exactly.
The price: a sample's normalisation depends on the other samples of its batch (with
``[B, C, H, W]`` maps the statistics come from ``B * H * W`` values per channel, so a batch
of one works). ``norm="group"`` (GroupNorm, per sample) is the batch-independent option.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_SURR: dict = {}


def _surrogates():
    if not _SURR:  # spiketrain.models' surrogate spike and its gradient, after the package loads
        from .. import spike, surrogate_grad
        _SURR.update(spike=spike, grad=surrogate_grad)
    return _SURR


def plif_step(v: Tensor, x: Tensor, inv_tau: Tensor, v_threshold: float = 1.0,
              v_reset: float = 0.0, surrogate: str = "atan") -> tuple[Tensor, Tensor]:
    """One PLIF step: membrane ``v [B, ...]``, input ``x [B, ...]``, ``inv_tau`` = 1/tau
    (a scalar tensor) -> ``(v_new, spikes)`` of the shape of ``v``."""
    h = v + (x - (v - v_reset)) * inv_tau
    s = _surrogates()["spike"](h - v_threshold, surrogate)
    v_new = h * (1.0 - s) + v_reset * s
    return v_new, s


class _FusedPLIF(torch.autograd.Function):
    """:func:`plif_step` as one autograd node: the same forward arithmetic, saves only
    ``v`` and ``x`` (``h`` and the spikes are recomputed in backward), analytic backward
    with the same surrogate gradient (not detaching the reset)."""

    @staticmethod
    def forward(ctx, v, x, inv_tau, v_threshold, v_reset, surrogate):
        h = v + (x - (v - v_reset)) * inv_tau
        s = ((h - v_threshold) > 0).to(h.dtype)
        v_new = h * (1.0 - s) + v_reset * s
        ctx.save_for_backward(v, x, inv_tau)
        ctx.consts = (v_threshold, v_reset, surrogate)
        return v_new, s

    @staticmethod
    def backward(ctx, g_v, g_s):
        v, x, a = ctx.saved_tensors
        v_th, v_reset, surrogate = ctx.consts
        drive = x - (v - v_reset)
        h = v + drive * a
        u = h - v_th
        s = (u > 0).to(h.dtype)
        sg = _surrogates()["grad"](surrogate, u)
        g_h = g_s * sg + g_v * ((1.0 - s) + (v_reset - h) * sg)
        g_a = (g_h * drive).sum().reshape(a.shape) if ctx.needs_input_grad[2] else None
        return g_h * (1.0 - a), g_h * a, g_a, None, None, None


def plif_step_fused(v: Tensor, x: Tensor, inv_tau: Tensor, v_threshold: float = 1.0,
                    v_reset: float = 0.0, surrogate: str = "atan") -> tuple[Tensor, Tensor]:
    """:func:`plif_step` as one autograd node (same values; gradients equal up to rounding)."""
    return _FusedPLIF.apply(v, x, inv_tau, float(v_threshold), float(v_reset), surrogate)


class PLIF(nn.Module):
    """PLIF neurons of one layer: one learnable ``w`` per layer, ``1/tau = sigmoid(w)``.

    ``init_tau`` (> 1) sets ``w = -log(init_tau - 1)``. Stateless: the membrane is passed in.
    ``fused``: one autograd node per step (:func:`plif_step_fused`), else the composed ops.
    """

    def __init__(self, init_tau: float = 2.0, v_threshold: float = 1.0, v_reset: float = 0.0,
                 surrogate: str = "atan", fused: bool = True):
        super().__init__()
        self.fused = bool(fused)
        if init_tau <= 1.0:
            raise ValueError(f"PLIF init_tau must be > 1, got {init_tau}")
        # shape [1], not 0-d: every memory tier (disk included) stores what autograd saves of it
        self.w = nn.Parameter(torch.full((1,), -math.log(init_tau - 1.0)))
        self.v_threshold, self.v_reset, self.surrogate = float(v_threshold), float(v_reset), surrogate

    @property
    def inv_tau(self) -> Tensor:
        return torch.sigmoid(self.w)

    def forward(self, v: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(v [B, ...], x [B, ...]) -> (v_new, spikes)``."""
        fn = plif_step_fused if self.fused else plif_step
        return fn(v, x, self.inv_tau, self.v_threshold, self.v_reset, self.surrogate)

    def extra_repr(self) -> str:
        return (f"tau={1.0 / self.inv_tau.item():.3f}, v_threshold={self.v_threshold}, "
                f"v_reset={self.v_reset}, surrogate={self.surrogate}")


class StepBatchNorm(nn.Module):
    """Batch norm with the current step's batch statistics only (no running statistics).

    ``x [B, C, H, W] -> [B, C, H, W]``: per channel, mean and biased variance over
    ``(B, H, W)``, then the learnable affine ``weight``, ``bias``. Same in train and eval,
    no buffer is ever written: pure (see the module docstring).
    """

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        return F.batch_norm(x, None, None, self.weight, self.bias, training=True, eps=self.eps)


def make_norm(kind: str, channels: int) -> nn.Module:
    """``"batch"``: :class:`StepBatchNorm`; ``"group"``: GroupNorm (per sample, up to 8
    groups); ``"none"``: identity."""
    if kind == "batch":
        return StepBatchNorm(channels)
    if kind == "group":
        groups = math.gcd(channels, 8)
        return nn.GroupNorm(groups, channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; choose 'batch', 'group' or 'none'")
