"""Learnable, continuous-time neuron parameters: per-neuron time constants ``tau`` (ms) from
which the discrete decays follow, ``alpha = exp(-dt / tau)``.

A time constant is stored as ``log tau`` (so it stays positive under any optimizer step);
its decay at step ``dt`` is :func:`decay`. Changing ``dt`` (the model's ``dt`` option)
therefore changes every decay consistently: the network keeps its dynamics in milliseconds.

Neurons (registered names):

- ``lif_learn``: :class:`LearnableLIFLayer`, LIF with a learnable ``tau_mem`` per neuron;
- ``alif_learn``: :class:`LearnableALIFLayer`, ALIF with learnable ``tau_mem`` and
  ``tau_adapt`` per neuron and a per-neuron adaptation strength ``adapt`` (a buffer).

Both take the generic (autograd) path under every memory strategy. e-prop computes
gradients for synaptic weights only and refuses a model whose time constants require grad
(freeze them with ``learn_tau=False`` or ``requires_grad_(False)``).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .neurons import RESETS, LIFLayer, NeuronLayer, lif_membrane
from .registry import register_neuron
from .surrogates import spike


def decay(log_tau: Tensor, dt: float) -> Tensor:
    """``alpha = exp(-dt / tau)`` with ``tau = exp(log_tau)`` (ms), elementwise ``[H]``.

    ``d alpha / d tau = alpha * dt / tau**2`` (autograd through both exponentials)."""
    return torch.exp(-dt / torch.exp(log_tau))


def tau_from_decay(alpha: Tensor, dt: float) -> Tensor:
    """Inverse of :func:`decay` in ms: ``tau = -dt / ln(alpha)`` (``0 < alpha < 1``)."""
    alpha = torch.as_tensor(alpha, dtype=torch.float64)
    if bool(((alpha <= 0) | (alpha >= 1)).any()):
        raise ValueError(f"a decay must lie in (0, 1) to have a time constant; got values in "
                         f"[{float(alpha.min()):.4g}, {float(alpha.max()):.4g}]")
    return -dt / torch.log(alpha)


def init_log_tau(n: int, tau: float, spread: float = 0.0, generator=None) -> Tensor:
    """``log tau`` for ``n`` neurons: ``tau * (1 + spread * U(-1, 1))`` (``spread`` in [0, 1))."""
    if tau <= 0:
        raise ValueError(f"time constants must be positive, got tau={tau}")
    if not 0.0 <= spread < 1.0:
        raise ValueError(f"tau spread must be in [0, 1), got {spread}")
    u = torch.rand(n, generator=generator) * 2 - 1 if spread else torch.zeros(n)
    return torch.log(tau * (1 + spread * u))


class LearnableLIFLayer(LIFLayer):
    """LIF with a per-neuron learnable membrane time constant. State ``(v, z)``.

    ``v_t = alpha v_{t-1} + I_t - theta z_{t-1}`` with ``alpha = exp(-dt / tau_mem)``,
    ``tau_mem [H]`` in ms. ``tau_spread`` draws the initial constants in
    ``tau_mem * (1 +- tau_spread)``; ``learn_tau=False`` keeps them fixed (e-prop)."""

    def __init__(self, n_in: int, n_hidden: int, recurrent: bool = True, tau_mem: float = 20.0,
                 dt: float = 1.0, threshold: float = 1.0, reset: str = "subtract",
                 surrogate: str = "fast_sigmoid", input_gain: float = 1.0, rec_gain: float = 1.0,
                 tau_spread: float = 0.0, learn_tau: bool = True):
        if reset not in RESETS:
            raise ValueError(f"reset must be one of {RESETS}, got {reset!r}")
        if dt <= 0:
            raise ValueError(f"dt must be positive, got {dt}")
        NeuronLayer.__init__(self, n_in, n_hidden, recurrent, input_gain, rec_gain)
        self.threshold, self.reset, self.surrogate = float(threshold), reset, surrogate
        self.dt = float(dt)
        self.log_tau_mem = nn.Parameter(init_log_tau(n_hidden, tau_mem, tau_spread),
                                        requires_grad=learn_tau)

    @property
    def tau_mem(self) -> Tensor:
        """Membrane time constants ``[H]`` (ms)."""
        return torch.exp(self.log_tau_mem)

    @property
    def beta(self) -> Tensor:
        """Membrane decays ``[H]`` at this layer's ``dt``."""
        return decay(self.log_tau_mem, self.dt)

    def dynamics(self, h, current):
        v, z = h
        v, _, thr = lif_membrane(v, None, z, current, self.beta, self.threshold,
                                 self.reset == "subtract")
        return (v, spike((v - thr) / self.threshold, self.surrogate))

    # ------------------------------------------------------------- resolution mapping
    def map_resolution(self, dt_target: float, method: str) -> None:
        """Re-discretise in place for step ``dt_target`` (see :mod:`..resolution`)."""
        from ..resolution import map_scalar
        a_t, g = map_scalar(self.beta.detach().double(), self.dt, dt_target, method)
        with torch.no_grad():
            self.log_tau_mem.copy_(torch.log(tau_from_decay(a_t, dt_target)))
            _scale_rows(self, g)
        self.dt = float(dt_target)


class LearnableALIFLayer(LearnableLIFLayer):
    """ALIF with per-neuron learnable ``tau_mem`` and ``tau_adapt``. State ``(v, a, z)``.

    ``a_t = rho a_{t-1} + z_{t-1}``, threshold ``theta + adapt * a_t``, ``rho = exp(-dt /
    tau_adapt)``; ``adapt [H]`` is a buffer (not trained)."""

    state_names = ("v", "a", "z")

    def __init__(self, n_in: int, n_hidden: int, tau_adapt: float = 200.0, adapt: float = 1.8,
                 tau_spread: float = 0.0, learn_tau: bool = True, **kw):
        super().__init__(n_in, n_hidden, tau_spread=tau_spread, learn_tau=learn_tau, **kw)
        self.log_tau_adapt = nn.Parameter(init_log_tau(n_hidden, tau_adapt, tau_spread),
                                          requires_grad=learn_tau)
        self.register_buffer("adapt", torch.full((n_hidden,), float(adapt)))

    @property
    def tau_adapt(self) -> Tensor:
        return torch.exp(self.log_tau_adapt)

    @property
    def rho(self) -> Tensor:
        return decay(self.log_tau_adapt, self.dt)

    def dynamics(self, h, current):
        v, a, z = h
        v, a, thr = lif_membrane(v, a, z, current, self.beta, self.threshold,
                                 self.reset == "subtract", self.rho, self.adapt)
        return (v, a, spike((v - thr) / self.threshold, self.surrogate))

    def map_resolution(self, dt_target: float, method: str) -> None:
        from ..resolution import map_scalar
        r_t, g_a = map_scalar(self.rho.detach().double(), self.dt, dt_target, method)
        with torch.no_grad():
            self.log_tau_adapt.copy_(torch.log(tau_from_decay(r_t, dt_target)))
            self.adapt.mul_(g_a.to(self.adapt.dtype))
        super().map_resolution(dt_target, method)


def _scale_rows(layer, g: Tensor) -> None:
    """Per-neuron input gain ``g [H]`` folded into the rows of ``w_in`` and ``w_rec``."""
    g = torch.as_tensor(g, dtype=layer.w_in.dtype).reshape(-1, 1)
    layer.w_in.mul_(g)
    if getattr(layer, "w_rec", None) is not None:
        layer.w_rec.mul_(g)


register_neuron("lif_learn")(LearnableLIFLayer)
register_neuron("alif_learn")(LearnableALIFLayer)

__all__ = ["decay", "tau_from_decay", "init_log_tau", "LearnableLIFLayer", "LearnableALIFLayer"]
