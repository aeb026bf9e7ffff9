"""What ``auto`` asks of a strategy: the candidates protocol, its context and the ranking.

A strategy class takes part in ``auto`` by describing its own candidates
(:meth:`spiketrain.strategies.base.Strategy.candidates`)::

    @classmethod
    def candidates(cls, ctx: PlanContext) -> list[Candidate]:
        a, b = ctx.cost["g"]                       # seconds of a call over L steps: a + b L
        return [ctx.candidate({}, "keep everything", {"device": ctx.saved_bytes(ctx.T)},
                              a + b * ctx.T)]

Each candidate carries the options that build it (``get(name, **options)``), the bytes it
needs per tier and its estimated seconds per training step. ``auto`` collects the
candidates of every registered strategy (or of the names / class paths it is given), marks
those that do not fit the budget, and picks the cheapest that fits (:func:`choose`).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from checkpoint_schedules import Copy, EndForward, EndReverse, Forward, Move, Reverse, StorageType

from ..hardware.units import format_size

DEFAULT_S_PER_BYTE = 1e-9  # slow-tier price when no bandwidth is known (1 GB/s)


@dataclass
class Candidate:
    """One row of the ranking table: strategy ``name``, the ``options`` that build it, a
    one-line ``desc``, ``need`` {tier: bytes}, whether it ``fits`` the budget, estimated
    seconds ``est_s`` per training step, ``recomputed`` steps and ``why`` (ranking note)."""

    name: str
    options: dict
    desc: str
    need: dict = field(default_factory=dict)
    fits: bool = True
    est_s: float = math.inf
    recomputed: int = 0
    why: str = ""

    def row(self) -> str:
        need = " ".join(f"{k}={format_size(v)}" for k, v in self.need.items())
        est = f"{self.est_s:9.3f}" if math.isfinite(self.est_s) else "        -"
        return (f"{self.name:10s} {'yes' if self.fits else 'no':4s} {est}  {self.recomputed:>10,d}"
                f"  {need:32s} {self.desc}")


def simulate(plan, cost=None, chunk_steps: int = 512, state_bytes: int = 0,
             s_per_byte: dict[str, float] | float = DEFAULT_S_PER_BYTE):
    """Recomputed steps of a plan's schedule, counted without running it; with ``cost``
    ({"f": (a, b), "g": (a, b), "seg": s}: seconds of a call over ``L`` steps without and
    with graph + backward, executor seconds per segment) also its estimated seconds,
    including ``s_per_byte`` ({tier: seconds per byte}, or one figure for every tier) for
    every state written to or read from a tier other than ``device``: returns
    ``(recomputed, seconds)``."""
    def price(tier):
        if isinstance(s_per_byte, dict):
            return s_per_byte.get(tier, DEFAULT_S_PER_BYTE)
        return s_per_byte

    io = {st: state_bytes * price(tier) for st, tier in plan.storage.items() if tier != "device"}
    sched = plan.schedule()
    it = iter(sched)
    bounds, nb = plan.bounds, len(plan.bounds) - 1
    pending = getattr(sched, "max_n", 0) is None
    phase, rec, sec = "forward", 0, 0.0
    for a in it:
        if isinstance(a, Forward):
            n1 = min(a.n1, nb)
            L = bounds[n1] - bounds[a.n0]
            if phase == "reverse":
                rec += L
            if cost is not None:
                if a.write_ics and a.storage in io:
                    sec += io[a.storage]
                if a.write_adj_deps:
                    sec += cost["g"][0] + cost["g"][1] * L
                else:
                    sec += -(-L // chunk_steps) * cost["f"][0] + cost["f"][1] * L
            if pending and n1 >= nb:
                sched.finalize(nb)
                pending = False
        elif isinstance(a, Reverse):
            if cost is not None:
                sec += cost.get("seg", 0.0)
        elif isinstance(a, (Copy, Move)) and a.from_storage in io and a.to_storage != StorageType.NONE:
            sec += io[a.from_storage]
        elif isinstance(a, EndForward):
            phase = "reverse"
        elif isinstance(a, EndReverse):
            break
    return rec if cost is None else (rec, sec)


def timed(fn, repeats=3) -> float:
    """Best CPU seconds of ``repeats`` calls (CPU time: steadier than wall time on a shared
    machine)."""
    best = math.inf
    for _ in range(repeats):
        t = time.process_time()
        fn()
        best = min(best, time.process_time() - t)
    return best


def fit_line(lengths: list[int], fns: dict[str, Callable[[int], Any]], rounds: int = 5) -> dict:
    """``{key: (a, b)}``: least-squares ``a + b L`` through the best of ``rounds`` timings of
    ``fns[key](L)`` at each length (interleaved: robust to other jobs on the machine), after
    one warm-up call each (first-call compilation, allocator)."""
    for fn in fns.values():
        fn(lengths[0])
    best = {(n, L): math.inf for n in fns for L in lengths}
    for _ in range(rounds):
        for n, fn in fns.items():
            for L in lengths:
                best[n, L] = min(best[n, L], timed(lambda: fn(L), 1))
    out = {}
    for n in fns:
        if len(lengths) == 1:
            out[n] = (0.0, best[n, lengths[0]] / lengths[0])
            continue
        ys = [best[n, L] for L in lengths]
        mx, my = sum(lengths) / len(lengths), sum(ys) / len(ys)
        b = sum((L - mx) * (y - my) for L, y in zip(lengths, ys)) / sum((L - mx) ** 2 for L in lengths)
        b = max(b, 0.0)
        out[n] = (max(0.0, my - b * mx), b)
    return out


@dataclass
class PlanContext:
    """What a strategy's :meth:`candidates` may use to describe and price itself.

    ``T`` steps, ``state_bytes``, ``saved`` (:class:`~.scheduled.SavedModel`: bytes autograd
    saves over ``L`` steps), ``backend`` (its ``slow_tiers``, ``profile()``), ``budget``
    {tier: bytes}, the ``model``, ``inputs`` and start ``state``, ``cost`` (the probe's
    timings, see :meth:`time_calls`), ``s_per_byte`` {tier: seconds per byte, from the
    backend profile's bandwidths} and ``options`` (``auto``'s own options, e.g.
    ``offload_margin``).
    """

    T: int
    state_bytes: int
    saved: Any
    backend: Any
    budget: dict
    model: Any
    inputs: Any
    state: Any
    cost: dict
    s_per_byte: dict
    options: dict = field(default_factory=dict)
    lengths: list = field(default_factory=list)
    windows: dict = field(default_factory=dict)
    segment_overhead: Callable[[], float] | None = None

    def candidate(self, options: dict, desc: str, need: dict, est_s: float,
                  recomputed: int = 0) -> Candidate:
        """A row for this strategy (``auto`` fills in the strategy's name)."""
        return Candidate("", dict(options), desc, dict(need), est_s=float(est_s),
                         recomputed=int(recomputed))

    def saved_bytes(self, L: int) -> int:
        """Bytes autograd saves over ``L`` steps (measured exactly up to 512 steps)."""
        self.saved.measure([min(L, 512)])
        return self.saved(L)

    def simulate(self, plan, chunk_steps: int = 512) -> tuple[int, float]:
        """``(recomputed steps, estimated seconds)`` of a schedule plan at the probe's
        timings, pricing slow-tier traffic with the backend's bandwidths."""
        if "seg" not in self.cost and self.segment_overhead is not None:
            self.cost["seg"] = self.segment_overhead()
        return simulate(plan, self.cost, chunk_steps, self.state_bytes, self.s_per_byte)

    def time_calls(self, key: str, strategy) -> tuple[float, float]:
        """Seconds ``(a, b)`` of ``strategy.run`` plus backward over ``L`` steps, ``a + b L``,
        fitted on the probe windows (cached in ``cost[key]``)."""
        if key not in self.cost:
            params = [p for p in self.model.parameters() if p.requires_grad]

            def call(L):
                with torch.enable_grad():
                    y = strategy.run(self.model, self.windows[L], self.state)
                    torch.autograd.grad(y.sum(), params, allow_unused=True)

            self.cost[key] = fit_line(self.lengths, {key: call})[key]
        return self.cost[key]


def choose(rows: list[Candidate], budget: dict[str, int]) -> Candidate | None:
    """Mark every row that needs more than ``budget`` on a tier as not fitting, sort the rows
    (fitting ones first, cheapest first), note why, and return the cheapest that fits."""
    for c in rows:
        over = {t: n for t, n in c.need.items() if t in budget and n > budget[t]}
        c.fits, c.why = not over, ""
        if over:
            c.why = "; ".join(f"needs {format_size(n)} > {t} budget {format_size(budget[t])}"
                              for t, n in over.items())
    rows.sort(key=lambda c: (not c.fits, c.est_s))
    best = next((c for c in rows if c.fits), None)
    for c in rows:
        if c is best:
            nxt = next((d for d in rows if d is not c and d.fits), None)
            c.why = "fastest that fits" + (f" ({nxt.est_s / c.est_s:.2f}x faster than {nxt.name})"
                                           if nxt and c.est_s > 0 else "")
        elif c.fits:
            c.why = f"fits, est. {c.est_s / best.est_s:.2f}x slower" if best.est_s > 0 else "fits"
    return best
