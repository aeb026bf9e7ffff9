"""Latency and energy of attention per generated token: gain-cell circuit vs a GPU.

Gain-cell figures are the paper's circuit estimates (Leroux et al. 2025, Fig. 5 and the
public code's energy plot), for one attention head holding a window of ``M = 1024`` tokens
of ``d = 64`` dimensions in 64x64 gain-cell arrays:

* latency: 65 ns per token, all heads of a layer in parallel (layers one after another);
* energy per head and token: 1.12 nJ for ``phi(Q K^T)``, 0.70 nJ for ``phi(S) V``, 4 nJ for
  digital circuits and routing, 0.33 nJ for the DACs (6.15 nJ in all).

For another window or head size the array, ADC/digital and routing energies are scaled with
the number of cells ``M * d`` and the DAC energy with ``d`` (an assumption; the paper gives
one geometry). The GPU side is a roofline estimate of the same sliding-window attention
(one new query per sequence attending to ``M`` cached keys and values, per layer and head),
from a device profile's peak FLOP/s and memory bandwidth at ``efficiency`` of peak, times an
assumed board power (the card's rated power, :data:`GPU_POWER_W`); it leaves out kernel
launch and framework overheads, so it is optimistic for the GPU.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

LATENCY_PER_TOKEN_S = 65e-9
ENERGY_PER_HEAD_J = {"phi(QK^T)": 1.12e-9, "phi(S)V": 0.70e-9, "digital & routing": 4.0e-9,
                     "DAC": 0.33e-9}
PAPER_WINDOW, PAPER_HEAD_DIM = 1024, 64
#: how each part scales with the geometry: "cells" (M * d), "dim" (d)
_SCALING = {"phi(QK^T)": "cells", "phi(S)V": "cells", "digital & routing": "cells", "DAC": "dim"}

#: assumed board power while attention runs, W (rated board power, datasheets): A100 SXM
#: 400 W, H100/H200 SXM 700 W; CPU: a 100 W package, a round figure
GPU_POWER_W = {"a100": 400.0, "h100": 700.0, "h200": 700.0, "cpu": 100.0, "ipu-gc200": 150.0}


@dataclass(frozen=True)
class AttentionShape:
    """The attention being estimated: layers, heads per layer, head size, window (tokens)."""

    n_layer: int
    n_head: int
    head_dim: int
    window: int

    @classmethod
    def paper(cls) -> "AttentionShape":
        """One GPT-2 attention layer as in the paper: 12 heads, d = 64, M = 1024."""
        return cls(1, 12, PAPER_HEAD_DIM, PAPER_WINDOW)


@dataclass
class Estimate:
    """Attention cost per generated token: ``latency_s``, ``energy_j`` (whole model, all
    layers and heads), the parts of the energy, and the assumptions behind them."""

    name: str
    latency_s: float
    energy_j: float
    parts: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def gaincell_estimate(shape: AttentionShape) -> Estimate:
    """The paper's circuit figures for ``shape`` (see the module docstring)."""
    cells = shape.window * shape.head_dim / (PAPER_WINDOW * PAPER_HEAD_DIM)
    dim = shape.head_dim / PAPER_HEAD_DIM
    heads = shape.n_layer * shape.n_head
    parts = {k: heads * e * (cells if _SCALING[k] == "cells" else dim)
             for k, e in ENERGY_PER_HEAD_J.items()}
    notes = [f"paper's circuit figures: {LATENCY_PER_TOKEN_S * 1e9:.0f} ns per token and layer "
             f"(heads in parallel); {sum(ENERGY_PER_HEAD_J.values()) * 1e9:.2f} nJ per head "
             f"and token at M={PAPER_WINDOW}, d={PAPER_HEAD_DIM}"]
    if cells != 1 or dim != 1:
        notes.append(f"scaled to M={shape.window}, d={shape.head_dim}: arrays, ADCs and routing "
                     f"x{cells:.3g} (cells), DACs x{dim:.3g} (d) - an assumption")
    return Estimate("gain-cell (paper)", shape.n_layer * LATENCY_PER_TOKEN_S,
                    sum(parts.values()), parts, notes)


def gpu_work(shape: AttentionShape, batch: int = 1, bytes_per_value: int = 2
             ) -> tuple[float, float]:
    """``(flops, bytes)`` of one layer's attention for one new token in each of ``batch``
    sequences: ``Q K^T`` and ``S V`` over ``M`` keys (``4 M d`` FLOPs per head) plus the
    softmax (~5 FLOPs per score); reading the ``M``-token K and V windows (``2 M d`` values
    per head) plus the new q, k, v and the output (``4 d``)."""
    M, d, H = shape.window, shape.head_dim, shape.n_head
    flops = batch * H * (4.0 * M * d + 5.0 * M)
    nbytes = batch * H * (2.0 * M * d + 4.0 * d) * bytes_per_value
    return flops, nbytes


def power_of(profile_name: str) -> float:
    """The assumed board power for a device profile name (``a100``, ``h100``,
    ``cuda:NVIDIA H100 ...``, ``cpu``); ValueError when unknown (pass ``power_w``)."""
    key = profile_name.lower()
    for name in sorted(GPU_POWER_W, key=len, reverse=True):
        if name in key:
            return GPU_POWER_W[name]
    raise ValueError(f"no power figure for device {profile_name!r}; give one (--power WATTS)")


def gpu_estimate(shape: AttentionShape, profile, batch: int = 1, bytes_per_value: int = 2,
                 power_w: float | None = None, efficiency: float = 0.5) -> Estimate:
    """Roofline estimate on ``profile`` (a :class:`spiketrain.hardware.profiles.DeviceProfile`):
    per layer ``max(flops / (peak * eff), bytes / (bandwidth * eff))``, layers in sequence; per
    token = that time divided by ``batch`` (sequences decoded together); energy = power x time.
    FLOP/s are the profile's half-precision peak when ``bytes_per_value`` is 2, else float32."""
    if batch < 1 or bytes_per_value not in (1, 2, 4) or not 0 < efficiency <= 1:
        raise ValueError("need batch >= 1, bytes_per_value in (1, 2, 4), 0 < efficiency <= 1")
    flops, nbytes = gpu_work(shape, batch, bytes_per_value)
    peak = profile.peak_flops_16 if bytes_per_value <= 2 and profile.peak_flops_16 else \
        profile.peak_flops
    t_compute = flops / (peak * efficiency)
    t_memory = nbytes / (profile.bandwidth["device"] * efficiency)
    step = shape.n_layer * max(t_compute, t_memory)
    power = float(power_w) if power_w is not None else power_of(profile.name)
    per_token = step / batch
    bound = "memory" if t_memory >= t_compute else "compute"
    notes = [f"{profile.name}: roofline at {efficiency:.0%} of peak "
             f"({peak / 1e12:.1f} TFLOP/s, {profile.bandwidth['device'] / 1e9:.0f} GB/s), "
             f"{bound}-bound; {8 * bytes_per_value}-bit values; batch {batch}; no launch "
             f"overheads",
             f"assumed power {power:.0f} W"
             + ("" if power_w is not None else " (rated board power)")]
    return Estimate(f"{profile.name} (roofline)", per_token, power * per_token,
                    {"compute s": shape.n_layer * t_compute / batch,
                     "memory s": shape.n_layer * t_memory / batch}, notes)


def _si(v: float, unit: str) -> str:
    if v == 0 or not math.isfinite(v):
        return f"{v:g} {unit}"
    for scale, prefix in ((1, ""), (1e-3, "m"), (1e-6, "u"), (1e-9, "n"), (1e-12, "p"),
                          (1e-15, "f")):
        if abs(v) >= scale:
            return f"{v / scale:.3g} {prefix}{unit}"
    return f"{v:.3g} {unit}"


def format_table(shape: AttentionShape, gaincell: Estimate, gpu: Estimate) -> str:
    """A plain-text table of both estimates, their ratio and the energy parts."""
    layers = f"{shape.n_layer} layer" + ("s" if shape.n_layer != 1 else "")
    lines = [f"attention per generated token: {layers} x {shape.n_head} heads, "
             f"d={shape.head_dim}, window M={shape.window}",
             f"{'':28}{'latency':>12}{'energy':>12}"]
    for e in (gaincell, gpu):
        lines.append(f"{e.name:28}{_si(e.latency_s, 's'):>12}{_si(e.energy_j, 'J'):>12}")
    lines.append(f"{'ratio (GPU / gain-cell)':28}{gpu.latency_s / gaincell.latency_s:>11.3g}x"
                 f"{gpu.energy_j / gaincell.energy_j:>11.3g}x")
    lines.append("gain-cell energy: " + ", ".join(f"{k} {_si(v, 'J')}"
                                                  for k, v in gaincell.parts.items()))
    for e in (gaincell, gpu):
        lines.extend(f"note: {n}" for n in e.notes)
    return "\n".join(lines)
