"""adLIF: adaptive LIF with learnable per-neuron time constants and coupling (registered as
``"adlif"``), the two-state neuron of the SSM-inspired SNN literature (Bittar & Garner 2022;
Fabre et al. 2025). State ``(v, w, z)``, each ``[B, H]``.

Continuous time (ms)::

    tau_mem   dv/dt = -v + I - w            (membrane, input current I)
    tau_adapt dw/dt = -w + a v + b S(t)      (adaptation: sub-threshold coupling a, spikes b)

discretised per equation with ``alpha = exp(-dt / tau_mem)``, ``beta = exp(-dt / tau_adapt)``::

    w_t = beta w_{t-1} + (1 - beta) (a v_{t-1} + b z_{t-1})
    v_t = alpha v_{t-1} + (1 - alpha) (I_t - w_t) - theta z_{t-1}      (reset: subtract)
    z_t = spike((v_t - theta) / theta)

``tau_mem``, ``tau_adapt`` (stored as ``log tau``), ``a`` (clamped to ``[-1, 1]``) and
``b`` (clamped to ``[0, 2]``) are per-neuron parameters. Initial values are drawn uniformly
in ``tau_mem_range`` / ``tau_adapt_range`` (default ``[0.25, 1.25] * tau_mem`` and
``[0.3, 1.5] * tau_adapt``: 5-25 ms and 60-300 ms for the defaults), ``a`` in ``[-1, 1]``
and ``b`` in ``[0, 2]``.

The same update as a linear state-space model of ``x = (v, w)`` plus the reset::

    x_t = A x_{t-1} + B_in I_t + B_z z_{t-1};   v_t -= theta z_{t-1}

:meth:`AdLIFLayer.ssm` returns ``(A [H, 2, 2], B_in [H, 2], B_z [H, 2])``. A layer built with
``form="ssm"`` holds ``A``, ``B_in``, ``B_z`` themselves as trainable parameters: that is
what a temporal-resolution mapping (:mod:`..resolution`) produces, since a re-discretised
adLIF is a general two-state linear neuron.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .learnable import decay
from .neurons import NeuronLayer
from .registry import register_neuron
from .surrogates import spike

FORMS = ("tau", "ssm")


@register_neuron("adlif")
class AdLIFLayer(NeuronLayer):
    """Adaptive LIF with learnable ``tau_mem``, ``tau_adapt``, ``a``, ``b`` per neuron."""

    state_names = ("v", "w", "z")

    def __init__(self, n_in: int, n_hidden: int, recurrent: bool = True, tau_mem: float = 20.0,
                 tau_adapt: float = 200.0, dt: float = 1.0, threshold: float = 1.0,
                 reset: str = "subtract", surrogate: str = "fast_sigmoid",
                 input_gain: float = 1.0, rec_gain: float = 1.0,
                 tau_mem_range: tuple | None = None, tau_adapt_range: tuple | None = None,
                 learn_tau: bool = True, form: str = "tau"):
        if reset != "subtract":
            raise ValueError(f"adlif supports reset='subtract' only, got {reset!r}")
        if form not in FORMS:
            raise ValueError(f"adlif form must be one of {FORMS}, got {form!r}")
        if dt <= 0 or tau_mem <= 0 or tau_adapt <= 0:
            raise ValueError(f"time constants and dt must be positive (tau_mem={tau_mem}, "
                             f"tau_adapt={tau_adapt}, dt={dt})")
        super().__init__(n_in, n_hidden, recurrent, input_gain, rec_gain)
        self.dt, self.threshold, self.surrogate, self.reset = float(dt), float(threshold), \
            surrogate, reset
        self.form = form
        lo_m, hi_m = tau_mem_range or (0.25 * tau_mem, 1.25 * tau_mem)
        lo_a, hi_a = tau_adapt_range or (0.3 * tau_adapt, 1.5 * tau_adapt)
        if not (0 < lo_m <= hi_m and 0 < lo_a <= hi_a):
            raise ValueError(f"adlif tau ranges must be positive and ordered, got "
                             f"{(lo_m, hi_m)} and {(lo_a, hi_a)}")
        H = n_hidden
        if form == "tau":
            self.log_tau_mem = nn.Parameter(torch.log(torch.empty(H).uniform_(lo_m, hi_m)),
                                            requires_grad=learn_tau)
            self.log_tau_adapt = nn.Parameter(torch.log(torch.empty(H).uniform_(lo_a, hi_a)),
                                              requires_grad=learn_tau)
            self.coupling = nn.Parameter(torch.empty(H).uniform_(-1.0, 1.0))
            self.spike_adapt = nn.Parameter(torch.empty(H).uniform_(0.0, 2.0))
        else:  # shapes only: the values come from a state dict or from_tau_form()
            self.A = nn.Parameter(torch.zeros(H, 2, 2))
            self.B_in = nn.Parameter(torch.zeros(H, 2))
            self.B_z = nn.Parameter(torch.zeros(H, 2))

    # ------------------------------------------------------------------ parameters
    @property
    def tau_mem(self) -> Tensor:
        return torch.exp(self.log_tau_mem)

    @property
    def tau_adapt(self) -> Tensor:
        return torch.exp(self.log_tau_adapt)

    def decays(self) -> tuple[Tensor, Tensor]:
        """``(alpha, beta)`` ``[H]`` at this layer's ``dt`` (tau form)."""
        return decay(self.log_tau_mem, self.dt), decay(self.log_tau_adapt, self.dt)

    def ssm(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(A [H, 2, 2], B_in [H, 2], B_z [H, 2])`` of the linear part on ``x = (v, w)``."""
        if self.form == "ssm":
            return self.A, self.B_in, self.B_z
        al, be = self.decays()
        a, b = self.coupling.clamp(-1.0, 1.0), self.spike_adapt.clamp(0.0, 2.0)
        A = torch.stack([torch.stack([al - (1 - al) * (1 - be) * a, -(1 - al) * be], -1),
                         torch.stack([(1 - be) * a, be], -1)], -2)
        B_in = torch.stack([1 - al, torch.zeros_like(al)], -1)
        B_z = torch.stack([-(1 - al) * (1 - be) * b, (1 - be) * b], -1)
        return A, B_in, B_z

    def to_ssm_form(self) -> "AdLIFLayer":
        """Replace the tau-form parameters by the equivalent ``A``, ``B_in``, ``B_z``
        (same outputs, now trainable as a general two-state neuron); returns self."""
        if self.form == "ssm":
            return self
        with torch.no_grad():
            A, B_in, B_z = (t.detach().clone() for t in self.ssm())
        for name in ("log_tau_mem", "log_tau_adapt", "coupling", "spike_adapt"):
            delattr(self, name)
        self.A, self.B_in, self.B_z = nn.Parameter(A), nn.Parameter(B_in), nn.Parameter(B_z)
        self.form = "ssm"
        return self

    # ------------------------------------------------------------------ dynamics
    def dynamics(self, h, current):
        """``(v, w, z), I [B, H] -> (v, w, z)``."""
        v, w, z = h
        if self.form == "tau":
            al, be = self.decays()
            a, b = self.coupling.clamp(-1.0, 1.0), self.spike_adapt.clamp(0.0, 2.0)
            w = be * w + (1 - be) * (a * v + b * z)
            v = al * v + (1 - al) * (current - w) - self.threshold * z
        else:
            A, Bi, Bz = self.A, self.B_in, self.B_z
            v, w = (A[:, 0, 0] * v + A[:, 0, 1] * w + Bi[:, 0] * current + Bz[:, 0] * z
                    - self.threshold * z,
                    A[:, 1, 0] * v + A[:, 1, 1] * w + Bi[:, 1] * current + Bz[:, 1] * z)
        return (v, w, spike((v - self.threshold) / self.threshold, self.surrogate))

    # ------------------------------------------------------------- resolution mapping
    def map_resolution(self, dt_target: float, method: str) -> None:
        """Re-discretise in place for step ``dt_target`` (see :mod:`..resolution`).

        ``baseline`` recomputes the decays from the time constants (this layer's own
        formula at the new ``dt``, input weights unchanged); ``none`` keeps the discrete
        system; the SSM mappings turn the layer into its ``form="ssm"``."""
        from ..resolution import map_matrix
        if method == "baseline":
            if self.form != "tau":
                raise ValueError("adlif in form 'ssm' has no time constants; the 'baseline' "
                                 "mapping needs the tau form")
            self.dt = float(dt_target)
            return
        if method == "none":  # keep the discrete system: time constants scale with dt
            if self.form == "tau":
                with torch.no_grad():
                    shift = math.log(dt_target / self.dt)
                    self.log_tau_mem.add_(shift)
                    self.log_tau_adapt.add_(shift)
            self.dt = float(dt_target)
            return
        with torch.no_grad():
            A, B_in, B_z = (t.detach().double() for t in self.ssm())
            reset = torch.zeros_like(B_z)
            reset[:, 0] = -self.threshold   # v -= threshold z: the own spike's input too
            A_t, (Bi_t,), (Bzr_t,) = map_matrix(A, [B_in], self.dt, dt_target, method,
                                                spike_inputs=[B_z + reset])
            Bz_t = Bzr_t - reset
        self.to_ssm_form()
        with torch.no_grad():
            self.A.copy_(A_t)
            self.B_in.copy_(Bi_t)
            self.B_z.copy_(Bz_t)
        self.dt = float(dt_target)
