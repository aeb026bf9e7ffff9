"""Per-neuron Jacobians of a layer's ``dynamics(h, I)``, derived by automatic differentiation.

A layer's neuron update ``h_t = dynamics(h_{t-1}, I_t)`` maps ``C`` state components
(each ``[B, H]``, the last one the spike ``z``) and the input current ``I_t [B, H]`` to the
next state. e-prop needs, for every neuron, the ``C x C`` matrix ``A_t = dh_t/dh_{t-1}`` and
the ``C``-vector ``c_t = dh_t/dI_t``. When the update is *diagonal* (each neuron's new state
depends only on its own previous state and current) one vector-Jacobian product per output
component, with a cotangent of ones over all neurons, yields that component's row of every
neuron's Jacobian at once. A whole chunk of ``K`` steps is evaluated as one batch
``[K * B, H]``, so the cost is ``C`` backward passes per chunk, not per step.

:func:`check_diagonal` verifies the assumption with random cotangents (a neuron whose update
mixes neurons or batch rows fails it) and the strategy refuses such a layer.
"""
from __future__ import annotations

import torch
from torch import Tensor


class NotDiagonalError(ValueError):
    """The neuron update couples different neurons (or batch rows): e-prop does not apply."""


def _call(layer, hp: list[Tensor], cur: Tensor) -> tuple[Tensor, ...]:
    out = layer.dynamics(tuple(hp), cur)
    if not isinstance(out, (tuple, list)) or len(out) != len(hp):
        raise TypeError(f"{type(layer).__name__}.dynamics must return a tuple of {len(hp)} state "
                        f"components (one per state_names entry), got {type(out).__name__}")
    for o, h in zip(out, hp):
        if not isinstance(o, Tensor) or o.shape != h.shape:
            raise TypeError(f"{type(layer).__name__}.dynamics must keep every state component's "
                            f"shape {tuple(h.shape)}; got {getattr(o, 'shape', type(o))}")
    return tuple(out)


def _leaves(h_prev: list[Tensor], cur: Tensor) -> tuple[list[Tensor], Tensor]:
    hp = [h.detach().reshape(-1, h.shape[-1]).requires_grad_(True) for h in h_prev]
    c = cur.detach().reshape(-1, cur.shape[-1]).requires_grad_(True)
    return hp, c


def _vjp(out: Tensor, inputs: list[Tensor], cot: Tensor, retain: bool) -> list[Tensor]:
    if not out.requires_grad:  # component independent of every input (e.g. a constant)
        return [torch.zeros_like(x) for x in inputs]
    gs = torch.autograd.grad(out, inputs, cot, retain_graph=retain, allow_unused=True)
    return [torch.zeros_like(x) if g is None else g for g, x in zip(gs, inputs)]


def neuron_jacobians(layer, h_prev: list[Tensor], cur: Tensor) -> tuple[Tensor, Tensor]:
    """Per-neuron Jacobians of ``layer.dynamics`` at ``(h_prev, cur)``.

    Args:
        h_prev: ``C`` tensors ``[K, B, H]`` (state before each step); cur: ``[K, B, H]``.
    Returns:
        ``A [K, C, C, B, H]`` with ``A[k, m, n] = d h^m_t / d h^n_{t-1}`` and
        ``c [K, C, B, H]`` with ``c[k, m] = d h^m_t / d I_t``.
    """
    K, B, H = cur.shape
    C = len(h_prev)
    with torch.enable_grad():
        hp, c_in = _leaves(h_prev, cur)
        out = _call(layer, hp, c_in)
        ones = torch.ones_like(c_in)
        rows_a, rows_c = [], []
        for m in range(C):
            gs = _vjp(out[m], hp + [c_in], ones, retain=m < C - 1)
            rows_a.append(torch.stack(gs[:C]))
            rows_c.append(gs[C])
    A = torch.stack(rows_a).view(C, C, K, B, H).permute(2, 0, 1, 3, 4)
    c = torch.stack(rows_c).view(C, K, B, H).permute(1, 0, 2, 3)
    return A, c


def check_diagonal(layer, h_prev: list[Tensor], cur: Tensor, A: Tensor, c: Tensor,
                   generator: torch.Generator | None = None, rtol: float = 1e-4) -> None:
    """Raise :class:`NotDiagonalError` unless ``dynamics`` is diagonal per neuron.

    With per-neuron rows ``A, c`` (from :func:`neuron_jacobians`), a diagonal update satisfies
    ``vjp(r) = r * row`` for any cotangent ``r``; a random ``r`` detects any coupling between
    neurons or batch rows (with probability one).
    """
    K, B, H = cur.shape
    C = len(h_prev)
    with torch.enable_grad():
        hp, c_in = _leaves(h_prev, cur)
        out = _call(layer, hp, c_in)
        for m in range(C):
            r = torch.rand(c_in.shape, generator=generator, dtype=c_in.dtype).to(c_in.device) + 0.5
            gs = _vjp(out[m], hp + [c_in], r, retain=m < C - 1)
            want = [r * A[:, m, n].reshape(-1, H) for n in range(C)] + [r * c[:, m].reshape(-1, H)]
            for n, (g, w) in enumerate(zip(gs, want)):
                scale = w.abs().max().clamp_min(1e-30)
                if (g - w).abs().max() > rtol * scale + 1e-12:
                    what = layer.state_names[n] if n < C else "input current"
                    raise NotDiagonalError(
                        f"{type(layer).__name__}.dynamics is not diagonal per neuron: state "
                        f"{layer.state_names[m]!r} of one neuron depends on {what!r} of other "
                        f"neurons or batch rows. e-prop needs each neuron's update to depend on "
                        f"its own state and current only (move couplings into input_current/"
                        f"recurrent_current) or use strategy='bptt'")
