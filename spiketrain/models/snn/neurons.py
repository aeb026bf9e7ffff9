"""Spiking neuron layers with explicit per-neuron state: the ``NeuronLayer`` protocol, LIF, ALIF.

A layer is synapses (input ``w_in`` and optional recurrent ``w_rec``) feeding a neuron whose
dynamics are a pure function ``h_t = dynamics(h_{t-1}, I_t)`` of its own past and the input
current ``I_t = input_current(x_t) + recurrent_current(z_{t-1})`` (``[B, H]``). Each state
component is ``[B, H]``, one value per neuron; the last one is the spike output ``z``. That
per-neuron structure is what e-prop relies on, and all a custom neuron has to provide
(subclass :class:`NeuronLayer`, write ``state_names`` and ``dynamics``).

LIF:  ``v_t = beta v_{t-1} + I_t - theta z_{t-1}``       (reset "subtract")
      ``v_t = beta v_{t-1} (1 - z_{t-1}) + I_t``           (reset "zero")
      ``z_t = spike((v_t - theta) / theta)``
ALIF: adaptive threshold ``A_t = theta + b_adapt a_t`` with
      ``a_t = rho a_{t-1} + z_{t-1}`` (Bellec et al. 2018), reset by ``A_t``.

The membrane update is written once, :func:`lif_membrane`; the fused chunk
(:mod:`.fused`) calls it too, and its compiled loops (:mod:`.lif_numba`) follow it op by op.
Fast paths are capabilities: :meth:`LIFLayer.kernel_spec` and :meth:`LIFLayer.eprop_kernel`
return None for any subclass that changes the maths, which then takes the generic path.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .surrogates import _lookup, spike

RESETS = ("subtract", "zero")

# the methods whose maths a fast path reproduces: a subclass overriding one of them loses it
KERNEL_METHODS = ("init_state", "input_current", "recurrent_current", "dynamics",
                  "step_current", "step")


def _decay(tau: float, dt: float) -> float:
    if tau <= 0 or dt <= 0:
        raise ValueError(f"time constants must be positive (tau={tau}, dt={dt})")
    return math.exp(-dt / tau)


def lif_membrane(v: Tensor, a: Tensor | None, z: Tensor, current: Tensor, beta: float,
                 threshold: float, subtract: bool, rho: float = 0.0, adapt: float = 0.0):
    """One LIF (``a`` None) or ALIF membrane update, all ``[B, H]`` (or ``[n, B, H]``).

    Returns ``(v_t, a_t, thr_t)``: the new membrane, adaptation (None for LIF) and the
    threshold the spike is compared with (the float ``threshold`` for LIF)."""
    if a is not None:
        a = rho * a + z
        thr = threshold + adapt * a
    else:
        thr = threshold
    if subtract:
        v = beta * v + current - thr * z
    else:
        v = beta * v * (1.0 - z) + current
    return v, a, thr


@dataclass
class LIFSpec:
    """Constants of an unmodified LIF/ALIF layer: what its fused and compiled kernels need."""

    beta: float
    threshold: float
    reset: str
    surrogate: str
    recurrent: bool
    alif: bool = False
    rho: float = 0.0
    adapt: float = 0.0

    def kernel_args(self) -> dict:
        return dict(beta=self.beta, threshold=self.threshold, reset=self.reset,
                    rho=self.rho, adapt=self.adapt)

    def membrane(self, v: Tensor, a: Tensor | None, z: Tensor, current: Tensor):
        """:func:`lif_membrane` with these constants."""
        return lif_membrane(v, a if self.alif else None, z, current, self.beta,
                            self.threshold, self.reset == "subtract", self.rho, self.adapt)


class NeuronLayer(nn.Module):
    """Base class (and protocol) of the neuron layers an :class:`~.rsnn.RSNN` stacks.

    State: a tuple of ``len(state_names)`` tensors ``[B, H]``, the spike output ``z`` last.
    Subclasses set ``state_names`` and implement :meth:`dynamics`, a pure per-neuron update
    (a neuron's new state depends on its own state and current only; e-prop checks that).
    The constructor takes ``(n_in, n_hidden, recurrent=True, ...)``; an RSNN passes each
    option it has (``tau_mem``, ``dt``, ``threshold``, ``reset``, ``surrogate``, ...) that
    the constructor names. Everything else has a default here:

    - :meth:`init_state` zeros; :meth:`input_current` ``x W_in^T``;
      :meth:`recurrent_current` ``z W_rec^T``; :meth:`step_current` and :meth:`step`.
    - capabilities, None unless a subclass provides them: :meth:`kernel_spec` (constants of
      the fused multi-step kernel) and :meth:`eprop_kernel` (compiled e-prop forward).
    """

    state_names: tuple[str, ...] = ("z",)

    def __init__(self, n_in: int, n_hidden: int, recurrent: bool = True,
                 input_gain: float = 1.0, rec_gain: float = 1.0):
        super().__init__()
        self.n_in, self.n_hidden, self.recurrent = n_in, n_hidden, recurrent
        self.w_in = nn.Parameter(torch.randn(n_hidden, n_in) * (input_gain / math.sqrt(n_in)))
        if recurrent:
            self.w_rec = nn.Parameter(torch.randn(n_hidden, n_hidden) * (rec_gain / math.sqrt(n_hidden)))
        else:
            self.register_parameter("w_rec", None)

    def init_state(self, batch_size: int) -> tuple[Tensor, ...]:
        """Zeros: ``len(state_names)`` tensors ``[B, H]``."""
        z = self.w_in.new_zeros(batch_size, self.n_hidden)
        return tuple(z.clone() for _ in self.state_names[:-1]) + (z,)

    def input_current(self, x: Tensor) -> Tensor:
        """Feed-forward current ``x [..., n_in] -> [..., H]`` (can run over a whole chunk)."""
        return x @ self.w_in.t()

    def recurrent_current(self, z: Tensor) -> Tensor:
        """``z_{t-1} [B, H] -> [B, H]``."""
        return z @ self.w_rec.t()

    def dynamics(self, h: tuple[Tensor, ...], current: Tensor) -> tuple[Tensor, ...]:
        """Pure per-neuron update ``h_{t-1}, I_t -> h_t`` (all ``[B, H]``, spike last)."""
        raise NotImplementedError(f"{type(self).__name__} must implement dynamics(h, current)")

    def step_current(self, h: tuple[Tensor, ...], i_in: Tensor) -> tuple[Tensor, ...]:
        """One step given the precomputed feed-forward current ``i_in [B, H]``."""
        cur = i_in + self.recurrent_current(h[-1]) if self.recurrent else i_in
        return self.dynamics(h, cur)

    def step(self, h: tuple[Tensor, ...], x_t: Tensor) -> tuple[tuple[Tensor, ...], Tensor]:
        """``x_t [B, n_in] -> (h_t, z_t [B, H])``."""
        h = self.step_current(h, self.input_current(x_t))
        return h, h[-1]

    # ------------------------------------------------------------------ capabilities
    def kernel_spec(self):
        """Constants of the fused multi-step kernel for this layer, or None (generic path)."""
        return None

    def eprop_kernel(self):
        """Compiled e-prop forward with Jacobians for this layer, or None (autograd path)."""
        return None

    def input_weight(self) -> Tensor | None:
        """``W_in`` when :meth:`input_current` is the plain ``x W_in^T`` (event-driven
        projection allowed), else None."""
        return self.w_in if type(self).input_current is NeuronLayer.input_current else None

    def _same_maths(self, cls: type) -> bool:
        """True when none of :data:`KERNEL_METHODS` differs from ``cls``'s."""
        return all(getattr(type(self), m) is getattr(cls, m) for m in KERNEL_METHODS)


class LIFLayer(NeuronLayer):
    """Leaky integrate-and-fire layer. State ``(v, z)``, each ``[B, H]``."""

    state_names = ("v", "z")

    def __init__(self, n_in: int, n_hidden: int, recurrent: bool = True, tau_mem: float = 20.0,
                 dt: float = 1.0, threshold: float = 1.0, reset: str = "subtract",
                 surrogate: str = "fast_sigmoid", input_gain: float = 1.0, rec_gain: float = 1.0):
        if reset not in RESETS:
            raise ValueError(f"reset must be one of {RESETS}, got {reset!r}")
        _lookup(surrogate)   # an unknown surrogate is refused here, not in the first backward
        super().__init__(n_in, n_hidden, recurrent, input_gain, rec_gain)
        self.beta = _decay(tau_mem, dt)
        self.threshold, self.reset, self.surrogate = float(threshold), reset, surrogate

    def dynamics(self, h: tuple[Tensor, ...], current: Tensor) -> tuple[Tensor, ...]:
        """Pure per-neuron update ``h_{t-1}, I_t -> h_t`` (all ``[B, H]``)."""
        v, z = h
        v, _, thr = lif_membrane(v, None, z, current, self.beta, self.threshold,
                                 self.reset == "subtract")
        return (v, spike((v - thr) / self.threshold, self.surrogate))

    def _spec(self, alif: bool) -> LIFSpec:
        return LIFSpec(beta=self.beta, threshold=self.threshold, reset=self.reset,
                       surrogate=self.surrogate, recurrent=self.w_rec is not None, alif=alif,
                       rho=getattr(self, "rho", 0.0) if alif else 0.0,
                       adapt=getattr(self, "adapt", 0.0) if alif else 0.0)

    def kernel_spec(self) -> LIFSpec | None:
        """This layer's constants, or None for a subclass that changes the maths."""
        return self._spec(False) if self._same_maths(LIFLayer) else None

    def eprop_kernel(self):
        """The compiled e-prop LIF/ALIF kernel (:mod:`.eprop_kernel`), or None."""
        spec = self.kernel_spec()
        if spec is None:
            return None
        from .eprop_kernel import LIFEPropKernel
        return LIFEPropKernel(spec) if LIFEPropKernel.supports(spec) else None


class ALIFLayer(LIFLayer):
    """Adaptive LIF layer. State ``(v, a, z)``, each ``[B, H]``."""

    state_names = ("v", "a", "z")

    def __init__(self, n_in: int, n_hidden: int, tau_adapt: float = 200.0, adapt: float = 1.8,
                 **kw):
        super().__init__(n_in, n_hidden, **kw)
        self.rho = _decay(tau_adapt, kw.get("dt", 1.0))
        self.adapt = float(adapt)

    def dynamics(self, h: tuple[Tensor, ...], current: Tensor) -> tuple[Tensor, ...]:
        v, a, z = h
        v, a, thr = lif_membrane(v, a, z, current, self.beta, self.threshold,
                                 self.reset == "subtract", self.rho, self.adapt)
        return (v, a, spike((v - thr) / self.threshold, self.surrogate))

    def kernel_spec(self) -> LIFSpec | None:
        return self._spec(True) if self._same_maths(ALIFLayer) else None
