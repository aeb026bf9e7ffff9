"""Zero-shot temporal-resolution adaptation: run a network trained at step ``dt_S`` at step
``dt_T`` without training (Karilanova, Fabre, Neftci, Özçelikkale, "Zero-Shot Temporal
Resolution Domain Adaptation for Spiking Neural Networks", arXiv 2411.04760, Neural Networks).

Each neuron's sub-threshold part is a discretised linear state-space model
``x[k+1] = A x[k] + B u[k]`` (the paper's view: SNN neuron <-> SSM). The input ``u[k]`` is a
spike count per step (binned spikes, recurrent spikes), so it scales with the step:
``u_T ~ r u_S`` with ``r = dt_T / dt_S``. The methods (:data:`METHODS`):

``none``
    keep every discrete parameter (the network simply runs faster or slower in real time).
``baseline``
    the paper's reference method, scaling the time constant only: the decays recomputed from
    ``tau`` at the new step, ``A_T = exp(-dt_T / tau) = A_S ** r``, the neuron's own input
    formula unchanged (adLIF's input passes ``1 - alpha``, so its input gain changes with it).
``integral``  (paper: integral approximation; state term ``H_v,T = H_v,S ** rho``)
    ``A_T = A_S ** r`` (the exact re-discretisation of the same continuous system) and
    ``B_T = (A_T - I)(A_S - I)^-1 B_S / r``: the input term is the integral of the state
    response over a step for a spike count spread uniformly over the coarser step. Exact
    for the linear part at the common times for a constant rate, the identity at ``r = 1``,
    composes (``S -> T -> S`` returns the parameters).
``expectation``  (stands for the paper's second proposed method; name and definition ours)
    ``A_T = A_S ** r``, ``B_T = B_S``: each spike keeps its charge, so the expected drive per
    unit of real time is kept to first order in ``dt / tau`` (the count per step scales with
    ``r`` as the leak per step ``1 - a ** r ~ r (1 - a)`` does). The first-order limit of
    the integral method's input term; composes.
``euler``  (stands for the paper's third proposed method; name and definition ours)
    first-order (forward Euler) re-discretisation of both terms: ``A_T = I + r (A_S - I)``,
    ``B_T = B_S``; keeps the steady state for a constant rate exactly, first-order
    transients; composes (linear in ``r``); refused when a decay would turn <= 0.

Provenance: the text of the paper that could be read (the arXiv HTML pages of v1 and v3
up to the start of the introduction, and a third-party review) gives its abstract (three
proposed methods from the SNN <-> SSM mapping, and the reference method of scaling the time
constant only), the name "integral approximation" and that method's state term
``H_v,T = H_v,S ** rho``. Nothing read gives the other two methods' names or equations, nor
any method's input term, and no code by the authors for this paper was found. The input terms
of all three, the definitions of ``expectation`` and ``euler`` and those two names are
reconstructed from the state-space view and are not the paper's equations (no equation
numbers are cited for that reason).

A bias (a value held every step, not a count) maps with ``r`` times the count gain:
``(1 - a_T) / (1 - a_S)`` (integral), ``r`` (expectation, euler), 1 (baseline, none).
A neuron's own spike is not a count spread over a step but an event at a known time, the end
of its step, which the next step's update applies after one step of decay (``B = A q`` for
the jump ``q``): adLIF's reset (``v -= theta z``) and spike-triggered adaptation ``B_z`` map
as ``A_T A_S^-1 (B_z + reset)`` with each proposed method's ``A_T`` (``map_matrix``'s
``spike_inputs``; exact after a spike at the common times). In the LIF/ALIF layers (fixed or
learned ``tau``) the reset is tied to the threshold (``v -= theta``, spikes at ``theta``), so
it stays; ALIF's adaptation variable is one more first-order system driven by spike counts
(its strength ``adapt`` takes the count gain). Recurrent spikes from other neurons enter
through the same input weights as the binned input spikes and map with them.

:func:`adapt` maps a whole RSNN (any layer with a fixed LIF/ALIF ``kernel_spec()``, or a
``map_resolution(dt_target, method)`` method such as ``adlif``, ``lif_learn``,
``alif_learn``, learned time constants included) and its leaky readout, and returns the
model keyword arguments that rebuild it at the new step (what ``spiketrain adapt`` writes
into the new run's config).
"""
from __future__ import annotations

import copy
import math

import torch
from torch import Tensor

METHODS = ("none", "baseline", "integral", "expectation", "euler")
#: the paper's proposed methods (``baseline`` is its reference method)
PROPOSED = ("integral", "expectation", "euler")


def _check(method: str, dt_source: float, dt_target: float) -> float:
    if method not in METHODS:
        raise ValueError(f"unknown resolution mapping {method!r}; choose one of "
                         f"{', '.join(METHODS)}")
    if not (dt_source > 0 and dt_target > 0):
        raise ValueError(f"time steps must be positive, got dt_source={dt_source}, "
                         f"dt_target={dt_target}")
    return dt_target / dt_source


def map_scalar(a: Tensor, dt_source: float, dt_target: float, method: str):
    """Per-neuron first-order system: decays ``a [H]`` at ``dt_source`` -> ``(a_T, g)``:
    the decays at ``dt_target`` and the gain ``g [H]`` of a spike-count input."""
    r = _check(method, dt_source, dt_target)
    a = torch.as_tensor(a, dtype=torch.float64)
    one = torch.ones_like(a)
    if method == "none":
        return a.clone(), one
    if method == "euler":
        a_t = 1 - r * (1 - a)
        if bool((a_t <= 0).any()):
            raise ValueError(f"euler mapping: a step {r:g}x coarser makes a decay <= 0 "
                             f"(min {float(a_t.min()):.3g}); use the integral mapping")
        return a_t, one
    if bool((a <= 0).any()):
        raise ValueError("a decay <= 0 has no continuous-time equivalent; cannot map it")
    a_t = a ** r
    if method in ("baseline", "expectation"):
        return a_t, one
    leak = (1 - a).abs() > 1e-12
    g = torch.where(leak, (1 - a_t) / torch.where(leak, 1 - a, one) / r, one)
    return a_t, g


def bias_gain(a: Tensor, dt_source: float, dt_target: float, method: str) -> Tensor:
    """Gain of a bias (a value held every step) into a decay ``a`` (``[H]`` or scalar)."""
    r = _check(method, dt_source, dt_target)
    a = torch.as_tensor(a, dtype=torch.float64)
    if method in ("none", "baseline"):
        return torch.ones_like(a)
    if method in ("euler", "expectation"):
        return torch.full_like(a, r)
    a_t, g = map_scalar(a, dt_source, dt_target, method)
    return g * r


def _matrix_function(A: Tensor, f, df, what: str) -> Tensor:
    """``f(A)`` for a batch of 2x2 real matrices ``[H, 2, 2]`` by Sylvester's formula over
    the eigenvalues (``f(lam) I + df(lam) (A - lam I)`` for a repeated one); refused when
    the result is not real."""
    A = A.to(torch.float64)
    tr = A[:, 0, 0] + A[:, 1, 1]
    det = A[:, 0, 0] * A[:, 1, 1] - A[:, 0, 1] * A[:, 1, 0]
    disc = torch.sqrt((tr * tr / 4 - det).to(torch.complex128))
    l1, l2 = tr / 2 + disc, tr / 2 - disc
    I = torch.eye(2, dtype=torch.complex128).expand_as(A)
    Ac = A.to(torch.complex128)
    close = (l1 - l2).abs() < 1e-7 * (1 + l1.abs())
    d = torch.where(close, torch.ones_like(l1), l1 - l2)[:, None, None]
    dist = (f(l1)[:, None, None] * (Ac - l2[:, None, None] * I)
            - f(l2)[:, None, None] * (Ac - l1[:, None, None] * I)) / d
    lam = ((l1 + l2) / 2)[:, None, None]
    rep = f(lam) * I + df(lam) * (Ac - lam * I)
    out = torch.where(close[:, None, None], rep, dist)
    if float(out.imag.abs().max()) > 1e-9 * max(1.0, float(out.real.abs().max())):
        raise ValueError(f"resolution mapping: {what} is not real (a neuron's transition matrix "
                         f"has a negative real eigenvalue)")
    return out.real


def matrix_power(A: Tensor, p: float) -> Tensor:
    """Principal real power ``A ** p`` of a batch of 2x2 matrices ``[H, 2, 2]`` (refused
    when it is not real, e.g. a negative real eigenvalue raised to a fractional power)."""
    return _matrix_function(A, lambda l: l ** p, lambda l: p * l ** (p - 1), "A ** r")


def _integral_input_map(A: Tensor, r: float) -> Tensor:
    """``M = (A^r - I)(A - I)^-1`` as the matrix function ``(l^r - 1) / (l - 1)`` (its limit
    ``r`` at an eigenvalue 1: a non-leaky mode, e.g. adlif coupling ``a = -1``)."""
    def f(l):
        near = (l - 1).abs() < 1e-6
        safe = torch.where(near, torch.full_like(l, 2.0), l)
        return torch.where(near, r + r * (r - 1) / 2 * (l - 1), (safe ** r - 1) / (safe - 1))

    def df(l):
        near = (l - 1).abs() < 1e-4
        safe = torch.where(near, torch.full_like(l, 2.0), l)
        exact = (r * safe ** (r - 1) * (safe - 1) - (safe ** r - 1)) / (safe - 1) ** 2
        return torch.where(near, r * (r - 1) / 2 + r * (r - 1) * (r - 2) / 6 * (l - 1), exact)

    return _matrix_function(A, f, df, "(A^r - I)(A - I)^-1")


def map_matrix(A: Tensor, Bs: list[Tensor], dt_source: float, dt_target: float, method: str,
               spike_inputs: list[Tensor] | None = None):
    """Per-neuron linear system ``A [H, 2, 2]`` with count inputs ``Bs`` (each ``[H, 2]``)
    -> ``(A_T, [B_T, ...])`` for the ``integral``, ``expectation`` or ``euler`` mapping.

    ``spike_inputs`` (each ``[H, 2]``): inputs driven by the neuron's own spike of the
    previous step (its reset and spike-triggered adaptation). That spike is an event at a
    known time, the end of the step, which the update of the next step applies after one
    step of decay: ``B = A q`` for the jump ``q`` at the spike. They map as
    ``A_T A_S^-1 B`` (the same jump, one target step of decay), with each method's ``A_T``;
    given, the result is ``(A_T, [B_T, ...], [spike B_T, ...])``."""
    r = _check(method, dt_source, dt_target)
    A = A.to(torch.float64)
    I = torch.eye(A.shape[-1], dtype=A.dtype).expand_as(A)
    if method not in PROPOSED:
        raise ValueError(f"map_matrix covers the mappings {', '.join(PROPOSED)}, got {method!r}")
    if method == "euler":
        A_t, B_t = I + r * (A - I), [B.to(torch.float64).clone() for B in Bs]
    else:
        A_t = matrix_power(A, r)
        if method == "expectation":
            B_t = [B.to(torch.float64).clone() for B in Bs]
        else:
            M = _integral_input_map(A, r)
            B_t = [(M @ B.to(torch.float64)[..., None])[..., 0] / r for B in Bs]
    if spike_inputs is None:
        return A_t, B_t
    S_t = [(A_t @ torch.linalg.solve(A, B.to(torch.float64)[..., None]))[..., 0]
           for B in spike_inputs]
    return A_t, B_t, S_t


# --------------------------------------------------------------------------- whole models
def _tau(a: float, dt: float) -> float:
    if not 0 < a < 1:
        raise ValueError(f"decay {a} has no time constant")
    return -dt / math.log(a)


def adapt(model, dt_source: float, dt_target: float, method: str = "integral"):
    """Map an RSNN-style model (``layers`` + leaky readout ``kappa``, ``w_out``, ``b_out``)
    trained at step ``dt_source`` (ms) to ``dt_target`` (ms).

    Returns ``(mapped_copy, changes)``: a deep copy with mapped parameters, and the model
    keyword arguments that rebuild that copy (``dt``, ``tau_mem``, ``tau_out``,
    ``tau_adapt``, ``neuron_options``) for a config. The source model is not modified."""
    _check(method, dt_source, dt_target)
    for attr in ("layers", "w_out", "kappa"):
        if not hasattr(model, attr):
            raise ValueError(f"resolution mapping needs an RSNN-style model (layers and a leaky "
                             f"readout); {type(model).__name__} has no {attr!r}")
    new = copy.deepcopy(model)
    changes: dict = {"dt": float(dt_target)}
    neuron_opts: dict = {}
    for k, layer in enumerate(new.layers):
        spec = layer.kernel_spec() if callable(getattr(layer, "kernel_spec", None)) else None
        if spec is not None:
            _map_fixed_lif(layer, spec, dt_source, dt_target, method, changes, neuron_opts, k)
        elif callable(getattr(layer, "map_resolution", None)):
            ldt = getattr(layer, "dt", dt_source)
            if abs(ldt - dt_source) > 1e-9 * dt_source:
                raise ValueError(f"layer {k} runs at dt={ldt} but the source step is {dt_source}")
            layer.map_resolution(dt_target, method)
        else:
            raise ValueError(f"layer {k} ({type(layer).__name__}) has no resolution mapping: "
                             f"give it a method map_resolution(dt_target, method)")
    # leaky readout: spikes are counts, the bias a held value
    k_t, g = map_scalar(torch.tensor([new.kappa], dtype=torch.float64), dt_source, dt_target,
                        method)
    gb = bias_gain(torch.tensor([new.kappa], dtype=torch.float64), dt_source, dt_target, method)
    with torch.no_grad():
        new.w_out.mul_(float(g))
        new.b_out.mul_(float(gb))
    new.kappa = float(k_t)
    changes["tau_out"] = _tau(new.kappa, dt_target)
    forms = {getattr(layer, "form", None) for layer in new.layers} - {None}
    if forms:  # e.g. adlif: a mapped layer is in its state-space form
        if len(forms) > 1:
            raise ValueError(f"layers ended in different forms {sorted(forms)}")
        neuron_opts["form"] = forms.pop()
    if neuron_opts:
        changes["neuron_options"] = neuron_opts
    return new, changes


def _map_fixed_lif(layer, spec, dt_s, dt_t, method, changes, neuron_opts, k):
    """A layer with constant (per-layer) LIF/ALIF decays: new constants, scaled weights."""
    b_t, g = map_scalar(torch.tensor([spec.beta], dtype=torch.float64), dt_s, dt_t, method)
    layer.beta = float(b_t)
    with torch.no_grad():
        layer.w_in.mul_(float(g))
        if getattr(layer, "w_rec", None) is not None:
            layer.w_rec.mul_(float(g))
    _same(changes, "tau_mem", _tau(layer.beta, dt_t), k)
    if spec.alif:
        r_t, g_a = map_scalar(torch.tensor([spec.rho], dtype=torch.float64), dt_s, dt_t, method)
        layer.rho = float(r_t)
        layer.adapt = float(spec.adapt * g_a)
        _same(changes, "tau_adapt", _tau(layer.rho, dt_t), k)
        _same(neuron_opts, "adapt", layer.adapt, k)


def _same(d: dict, key: str, value: float, k: int) -> None:
    if key in d and abs(d[key] - value) > 1e-9 * abs(value):
        raise ValueError(f"layer {k} maps {key} to {value}, another layer to {d[key]}: the "
                         f"model's {key} is one value for all layers")
    d[key] = float(value)


__all__ = ["METHODS", "PROPOSED", "map_scalar", "bias_gain", "matrix_power", "map_matrix", "adapt"]
