"""Surrogate gradients for the spike nonlinearity, chosen by name.

Forward: Heaviside ``z = (x > 0)``. Backward: ``dz/dx`` replaced by a smooth
pseudo-derivative ``g(x)``. Each is an autograd Function that saves only ``x``.
Formulas (x = normalised membrane distance to threshold):

- ``fast_sigmoid`` (slope k=25): ``g = k / (2 (1 + k|x|)^2)``, derivative of ``(1 + kx/(1+k|x|))/2``
- ``superspike``  (beta=10, Zenke & Ganguli 2018): ``g = 1 / (1 + beta|x|)^2``
- ``atan``        (alpha=2, Fang et al.): ``g = alpha / (2 (1 + (pi alpha x / 2)^2))``
- ``triangle``    (gamma=0.3, Bellec et al. 2020): ``g = gamma * max(0, 1 - |x|)``
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor


def _fast_sigmoid_grad(x: Tensor, k: float) -> Tensor:
    return k / (2.0 * (1.0 + k * x.abs()) ** 2)


def _superspike_grad(x: Tensor, beta: float) -> Tensor:
    return 1.0 / (1.0 + beta * x.abs()) ** 2


def _atan_grad(x: Tensor, alpha: float) -> Tensor:
    return alpha / (2.0 * (1.0 + (math.pi * alpha * x / 2.0) ** 2))


def _triangle_grad(x: Tensor, gamma: float) -> Tensor:
    return gamma * torch.clamp(1.0 - x.abs(), min=0.0)


SURROGATE_GRADS: dict[str, tuple[Callable[[Tensor, float], Tensor], float]] = {
    "fast_sigmoid": (_fast_sigmoid_grad, 25.0),
    "superspike": (_superspike_grad, 10.0),
    "atan": (_atan_grad, 2.0),
    "triangle": (_triangle_grad, 0.3),
}


class _Spike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, name: str, scale: float) -> Tensor:
        ctx.save_for_backward(x)
        ctx.name, ctx.scale = name, scale
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_z: Tensor):
        (x,) = ctx.saved_tensors
        fn, _ = SURROGATE_GRADS[ctx.name]
        return grad_z * fn(x, ctx.scale), None, None


def surrogate_grad(name: str, x: Tensor, scale: float | None = None) -> Tensor:
    """The pseudo-derivative ``g(x)`` of surrogate ``name`` (same shape as x)."""
    fn, default = _lookup(name)
    return fn(x, default if scale is None else scale)


def _lookup(name: str):
    try:
        return SURROGATE_GRADS[name]
    except KeyError:
        raise ValueError(
            f"unknown surrogate {name!r}; choose one of {sorted(SURROGATE_GRADS)}"
        ) from None


def spike(x: Tensor, surrogate: str = "fast_sigmoid", scale: float | None = None) -> Tensor:
    """Heaviside spike ``(x > 0)`` with the surrogate gradient ``name``. Shape of x."""
    _, default = _lookup(surrogate)
    return _Spike.apply(x, surrogate, float(default if scale is None else scale))
