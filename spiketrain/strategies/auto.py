"""``auto``: the planner. Probe, estimate, rank, pick the fastest strategy that fits.

Probe (a few dozen steps): bytes of the state, bytes autograd saves per step (exact, for
the segment lengths each plan uses), and the seconds of one ``model.chunk`` call over ``L``
steps, fitted as ``a + b * L`` from three lengths (``a``: the per-call cost - kernel set-up,
Python, autograd - that makes many short segments slower than few long ones): without
graph (``f``), with graph plus backward (``g``), and under ``offload`` to each slow tier
(``o``, per chunk). Each candidate's plan (the strategy's own planner under the budget)
gives the bytes per tier; walking its schedule prices every action:

    Forward of L steps kept for backward:  a_g + b_g * L
    Forward of L steps without graph:      ceil(L / chunk_steps) * a_f + b_f * L
    a state written to or read from the slow tier: 1 ns per byte
    each segment backpropagated: the executor's own overhead (measured: a one-level
    ``double`` over the probe window in 8 segments, minus what the lines above predict)
    bptt: a_g + b_g * T;   offload: ceil(T / chunk) * a_o + b_o * T

``rank(model, inputs)`` returns the table (``spiketrain plan`` prints it); ``run`` trains
with the first feasible row and records the table and the reason in the report's notes.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
from checkpoint_schedules import Copy, EndForward, EndReverse, Forward, Move, Reverse, StorageType

from ..hardware.units import format_size
from ..models.base import state_detach, state_nbytes
from . import inputs as inp
from .base import BudgetError, Strategy
from .executor import REDUCTIONS, apply_reduce
from .registry import get, register
from .scheduled import ScheduledStrategy, saved_model

CANDIDATES = ("bptt", "checkpoint", "revolve", "double", "offload")


@dataclass
class Candidate:
    """One row of the ranking table."""

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
        return f"{self.name:10s} {'yes' if self.fits else 'no':4s} {est}  {self.recomputed:>10,d}  {need:32s} {self.desc}"


def simulate(plan, cost=None, chunk_steps: int = 512, state_bytes: int = 0,
             slow_s_per_byte: float = 1e-9):
    """Recomputed steps of a plan's schedule, counted without running it; with ``cost``
    ({"f": (a, b), "g": (a, b)}, see the module docstring) also its estimated seconds,
    including ``slow_s_per_byte`` for every state written to or read from a tier other than
    ``device``: returns ``(recomputed, seconds)``."""
    slow = {st for st, tier in plan.storage.items() if tier != "device"}
    io = state_bytes * slow_s_per_byte
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
                if a.write_ics and a.storage in slow:
                    sec += io
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
        elif isinstance(a, (Copy, Move)) and a.from_storage in slow and a.to_storage != StorageType.NONE:
            sec += io
        elif isinstance(a, EndForward):
            phase = "reverse"
        elif isinstance(a, EndReverse):
            break
    return rec if cost is None else (rec, sec)


def _timed(fn, repeats=3) -> float:
    best = math.inf
    for _ in range(repeats):
        t = time.process_time()  # CPU time: steadier than wall time on a shared machine
        fn()
        best = min(best, time.process_time() - t)
    return best


@register("auto")
class Auto(Strategy):
    """Pick the fastest strategy that fits ``budget``. Options: ``candidates`` (names),
    ``probe_steps`` (default 128: calls of 1/8, 3/8 and all of ``probe_steps`` steps are
    timed), ``reduce`` (as for checkpoint), ``offload_margin`` (offload costs at least this
    fraction more than BPTT per step, default 0.05)."""

    def __init__(self, budget=None, candidates=CANDIDATES, probe_steps: int = 128,
                 reduce: str | None = None, offload_margin: float = 0.05, **options):
        super().__init__(budget=budget, **options)
        unknown = [c for c in candidates if c not in CANDIDATES]
        if unknown:
            raise ValueError(f"auto: unknown candidate(s) {unknown}; choose from {CANDIDATES}")
        if reduce not in REDUCTIONS:
            raise ValueError(f"unknown reduce {reduce!r}; choose one of {REDUCTIONS}")
        self.candidates, self.probe_steps, self.reduce = tuple(candidates), probe_steps, reduce
        self.offload_margin = offload_margin
        self.table: list[Candidate] = []

    # --- probe -----------------------------------------------------------------------------
    def probe(self, model, inputs, state) -> dict:
        """Seconds of one call over ``L`` steps as ``(a, b)`` for ``a + b * L``: no graph
        ("f"), graph + backward ("g"), offload per tier ("offload_<tier>"); "k" = steps probed."""
        T = inp.length(inputs)
        k = max(1, min(self.probe_steps, T))
        lengths = sorted({max(1, k // 8), max(1, (3 * k) // 8), k})
        params = [p for p in model.parameters() if p.requires_grad]
        dtype = params[0].dtype if params else torch.get_default_dtype()
        xs = {L: inp.window(model, inputs, 0, L, dtype) for L in lengths}

        def nograd(L):
            with torch.no_grad():
                model.chunk(state, xs[L])

        def graph(L):
            with torch.enable_grad():
                _, y = model.chunk(state_detach(state, True), xs[L])
                torch.autograd.grad(y.sum(), params, allow_unused=True)

        fns = {"f": nograd, "g": graph}
        if "offload" in self.candidates:
            for tier in self._offload_tiers(model, inputs):
                def off(L, tier=tier):
                    s = get("offload", tier=tier)
                    with torch.enable_grad():
                        y = s.run(model, xs[L], state)
                        torch.autograd.grad(y.sum(), params, allow_unused=True)
                fns[f"offload_{tier}"] = off
        for fn in fns.values():  # warm-up (first-call compilation, allocator)
            fn(lengths[0])
        best = {(n, L): math.inf for n in fns for L in lengths}
        for _ in range(5):  # interleaved, best of 5: robust to other jobs on the machine
            for n, fn in fns.items():
                for L in lengths:
                    best[n, L] = min(best[n, L], _timed(lambda: fn(L), 1))
        out = {"k": k}
        for n in fns:  # least-squares line through (L, seconds)
            if len(lengths) == 1:
                out[n] = (0.0, best[n, k] / k)
                continue
            ys = [best[n, L] for L in lengths]
            mx, my = sum(lengths) / len(lengths), sum(ys) / len(ys)
            b = sum((L - mx) * (y - my) for L, y in zip(lengths, ys)) / sum((L - mx) ** 2 for L in lengths)
            b = max(b, 0.0)
            out[n] = (max(0.0, my - b * mx), b)
        for n in list(out):  # offload does BPTT's work plus packing and copies: never cheaper
            if n.startswith("offload_"):
                a, b = out[n]
                out[n] = (max(a, out["g"][0]), max(b, out["g"][1] * (1 + self.offload_margin)))
        out["c_f"], out["c_g"] = out["f"][1], out["g"][1]  # per-step figures (plan command)
        out["seg"] = 0.0
        if k >= 16 and any(c in self.candidates for c in ("checkpoint", "revolve", "double")):
            out["seg"] = self._executor_overhead(model, xs[k], state, params, out)
        return out

    def _executor_overhead(self, model, xs, state, params, cost) -> float:
        """Seconds per segment the schedule executor adds to the model's own calls (planning,
        tier transfers, checks, autograd set-up): a one-level ``double`` over the probe window
        in 8 segments, timed (best of 5) minus what the call model predicts for its schedule."""
        seg = max(1, inp.length(xs) // 8)
        s = get("double", period=seg, fine=seg)

        def run():
            with torch.enable_grad():
                y = s.run(model, xs, state)
                torch.autograd.grad(y.sum(), params, allow_unused=True)

        run()
        t = min(_timed(run, 1) for _ in range(5))
        plan = s.make_plan(model, xs, state)
        _, pred = simulate(plan, {**cost, "seg": 0.0}, s.chunk_steps, state_nbytes(state))
        return max(0.0, (t - pred) / max(1, len(plan.bounds) - 1))

    @staticmethod
    def _offload_tiers(model, inputs):
        dev = ScheduledStrategy._device(model, inputs)
        return ["host", "disk"] if dev.type == "cuda" else ["disk"]  # on CPU host RAM == device

    # --- ranking ---------------------------------------------------------------------------
    def rank(self, model, inputs, state=None) -> list[Candidate]:
        """Every candidate with its plan, bytes per tier, feasibility and estimated seconds
        per training step, feasible ones first by estimated time."""
        inp.check_inputs(inputs)
        if state is None:
            state = model.init_state(inp.batch_size(inputs))
        T, S = inp.length(inputs), state_nbytes(state)
        device = ScheduledStrategy._device(model, inputs)
        saved = saved_model(model, inputs, state)
        pr = self.probe(model, inputs, state)
        self.probe_result = pr
        rows: list[Candidate] = []
        for name in self.candidates:
            if name == "bptt":
                saved.measure([min(T, 512)])
                need = {"device": saved(T)}
                a, b = pr["g"]
                rows.append(Candidate("bptt", {}, "keep everything", need, est_s=a + b * T))
            elif name == "offload":
                for tier in self._offload_tiers(model, inputs):
                    s = get("offload", tier=tier)
                    need = {"device": 0, tier: s.predict(model, inputs, state)}
                    a, b = pr[f"offload_{tier}"]
                    rows.append(Candidate("offload", {"tier": tier}, f"offload(tier={tier})", need,
                                          est_s=-(-T // s.chunk_steps) * a + b * T))
            else:
                for opts in self._variants(name, T):
                    s = get(name, budget=self.budget, **opts)
                    plan = s._plan_exact(T, S, saved, device)
                    rec, est = simulate(plan, pr, s.chunk_steps, S)
                    rows.append(Candidate(name, {**opts, **self._plan_options(name, plan)}, plan.desc,
                                          plan.need, est_s=est, recomputed=rec))
        for c in rows:
            over = {t: n for t, n in c.need.items() if t in self.budget and n > self.budget[t]}
            if over:
                c.fits = False
                c.why = "; ".join(f"needs {format_size(n)} > {t} budget {format_size(self.budget[t])}"
                                  for t, n in over.items())
        rows.sort(key=lambda c: (not c.fits, c.est_s))
        best = next((c for c in rows if c.fits), None)
        for c in rows:
            if c is best:
                nxt = next((d for d in rows if d is not c and d.fits), None)
                c.why = "fastest that fits" + (f" ({nxt.est_s / c.est_s:.2f}x faster than {nxt.name})"
                                               if nxt and c.est_s > 0 else "")
            elif c.fits:
                c.why = f"fits, est. {c.est_s / best.est_s:.2f}x slower"
        self.table = rows
        return rows

    @staticmethod
    def _variants(name, T):
        if name == "revolve":  # one-step blocks are exact but slow in Python; sqrt(T) blocks
            return [{"block": max(1, math.ceil(math.sqrt(T)))}, {"block": max(1, math.ceil(T ** 0.25))}]
        return [{}]

    @staticmethod
    def _plan_options(name, plan):
        n = plan.notes
        if name == "checkpoint":
            return {"segment": n["segment"]}
        if name == "revolve":
            return {"slots": max(1, n["slots"]), "block": n["block"]}
        if name == "double":
            return {k: n[k] for k in ("period", "fine", "fine_slots") if n[k] is not None}
        return {}

    def format_table(self, rows=None) -> str:
        rows = self.table if rows is None else rows
        head = f"{'strategy':10s} {'fits':4s} {'est. s':>9s}  {'recomputed':>10s}  {'bytes per tier':32s} plan"
        lines = [head, "-" * len(head)]
        for c in rows:
            lines.append(c.row() + (f"   <- {c.why}" if c.why else ""))
        return "\n".join(lines)

    # --- run -------------------------------------------------------------------------------
    def run(self, model, inputs, state=None):
        rows = self.rank(model, inputs, state)
        best = next((c for c in rows if c.fits), None)
        if best is None:
            raise BudgetError("auto: no strategy fits the budget " + ", ".join(
                f"{t}={format_size(v)}" for t, v in self.budget.items()) + ":\n" + self.format_table(rows))
        opts = dict(best.options)
        if best.name in ("checkpoint", "revolve", "double"):
            opts["reduce"] = self.reduce
            strat = get(best.name, budget=self.budget, **opts)
        else:
            strat = get(best.name, **({"budget": self.budget} if best.name == "offload" else {}), **opts)
        strat.report.strategy = best.name
        self.chosen = strat
        self.report = strat.report
        y = strat.run(model, inputs, state)
        self.report.notes["auto"] = {"choice": best.name, "options": best.options, "why": best.why,
                                     "estimated_s": best.est_s, "table": self.format_table(rows)}
        if best.name in ("bptt", "offload") and self.reduce:
            y = apply_reduce(y, self.reduce)
        return y
