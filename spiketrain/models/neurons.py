"""Spiking neuron layers with explicit per-neuron state: LIF and ALIF.

A layer is synapses (input ``w_in`` and optional recurrent ``w_rec``) feeding a
neuron whose dynamics are a pure function ``h_t = dynamics(h_{t-1}, I_t)`` of its own
past and the input current ``I_t = x_t W_in^T + z_{t-1} W_rec^T`` (``[B, H]``).
Each state component is ``[B, H]``, one value per neuron; the last one is the spike
output ``z``. That per-neuron structure is what e-prop relies on.

LIF:  ``v_t = beta v_{t-1} + I_t - theta z_{t-1}``       (reset "subtract")
      ``v_t = beta v_{t-1} (1 - z_{t-1}) + I_t``           (reset "zero")
      ``z_t = spike((v_t - theta) / theta)``
ALIF: adaptive threshold ``A_t = theta + b_adapt a_t`` with
      ``a_t = rho a_{t-1} + z_{t-1}`` (Bellec et al. 2018), reset by ``A_t``.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .surrogates import spike

RESETS = ("subtract", "zero")


def _decay(tau: float, dt: float) -> float:
    if tau <= 0 or dt <= 0:
        raise ValueError(f"time constants must be positive (tau={tau}, dt={dt})")
    return math.exp(-dt / tau)


class LIFLayer(nn.Module):
    """Leaky integrate-and-fire layer. State ``(v, z)``, each ``[B, H]``."""

    state_names = ("v", "z")

    def __init__(self, n_in: int, n_hidden: int, recurrent: bool = True, tau_mem: float = 20.0,
                 dt: float = 1.0, threshold: float = 1.0, reset: str = "subtract",
                 surrogate: str = "fast_sigmoid", input_gain: float = 1.0, rec_gain: float = 1.0):
        super().__init__()
        if reset not in RESETS:
            raise ValueError(f"reset must be one of {RESETS}, got {reset!r}")
        self.n_in, self.n_hidden, self.recurrent = n_in, n_hidden, recurrent
        self.beta = _decay(tau_mem, dt)
        self.threshold, self.reset, self.surrogate = float(threshold), reset, surrogate
        self.w_in = nn.Parameter(torch.randn(n_hidden, n_in) * (input_gain / math.sqrt(n_in)))
        if recurrent:
            self.w_rec = nn.Parameter(torch.randn(n_hidden, n_hidden) * (rec_gain / math.sqrt(n_hidden)))
        else:
            self.register_parameter("w_rec", None)

    def init_state(self, batch_size: int) -> tuple[Tensor, ...]:
        z = self.w_in.new_zeros(batch_size, self.n_hidden)
        return (z.clone(), z)

    def input_current(self, x: Tensor) -> Tensor:
        """Feed-forward current ``x [..., n_in] -> [..., H]`` (can run over a whole chunk)."""
        return x @ self.w_in.t()

    def recurrent_current(self, z: Tensor) -> Tensor:
        """``z_{t-1} [B, H] -> [B, H]``."""
        return z @ self.w_rec.t()

    def dynamics(self, h: tuple[Tensor, ...], current: Tensor) -> tuple[Tensor, ...]:
        """Pure per-neuron update ``h_{t-1}, I_t -> h_t`` (all ``[B, H]``)."""
        v, z = h
        if self.reset == "subtract":
            v = self.beta * v + current - self.threshold * z
        else:
            v = self.beta * v * (1.0 - z) + current
        z = spike((v - self.threshold) / self.threshold, self.surrogate)
        return (v, z)

    def step_current(self, h: tuple[Tensor, ...], i_in: Tensor) -> tuple[Tensor, ...]:
        """One step given the precomputed feed-forward current ``i_in [B, H]``."""
        cur = i_in + self.recurrent_current(h[-1]) if self.recurrent else i_in
        return self.dynamics(h, cur)

    def step(self, h: tuple[Tensor, ...], x_t: Tensor) -> tuple[tuple[Tensor, ...], Tensor]:
        """``x_t [B, n_in] -> (h_t, z_t [B, H])``."""
        h = self.step_current(h, self.input_current(x_t))
        return h, h[-1]


class ALIFLayer(LIFLayer):
    """Adaptive LIF layer. State ``(v, a, z)``, each ``[B, H]``."""

    state_names = ("v", "a", "z")

    def __init__(self, n_in: int, n_hidden: int, tau_adapt: float = 200.0, adapt: float = 1.8,
                 **kw):
        super().__init__(n_in, n_hidden, **kw)
        self.rho = _decay(tau_adapt, kw.get("dt", 1.0))
        self.adapt = float(adapt)

    def init_state(self, batch_size: int) -> tuple[Tensor, ...]:
        z = self.w_in.new_zeros(batch_size, self.n_hidden)
        return (z.clone(), z.clone(), z)

    def dynamics(self, h: tuple[Tensor, ...], current: Tensor) -> tuple[Tensor, ...]:
        v, a, z = h
        a = self.rho * a + z
        thr = self.threshold + self.adapt * a
        if self.reset == "subtract":
            v = self.beta * v + current - thr * z
        else:
            v = self.beta * v * (1.0 - z) + current
        z = spike((v - thr) / self.threshold, self.surrogate)
        return (v, a, z)


NEURONS = {"lif": LIFLayer, "alif": ALIFLayer}
