"""``auto``: the planner. Probe, estimate, rank, pick the fastest strategy that fits.

Every registered strategy that describes its own candidates (``Strategy.candidates``, see
:mod:`.planning`) is considered, or those named in ``candidates`` (names or class paths).
Probe (a few dozen steps): bytes of the state, bytes autograd saves per step (exact, for
the segment lengths each plan uses), and the seconds of one ``model.chunk`` call over ``L``
steps, fitted as ``a + b * L`` from three lengths (``a``: the per-call cost - kernel set-up,
Python, autograd - that makes many short segments slower than few long ones): without
graph (``f``) and with graph plus backward (``g``). A candidate prices itself from these:

    bptt: a_g + b_g * T
    checkpoint, revolve, double (any schedule strategy): its plan's schedule walked action by
      action - forward of L steps kept for backward a_g + b_g * L, without graph
      ceil(L / chunk_steps) * a_f + b_f * L, a state written to or read from a slow tier at
      that tier's bandwidth in the backend's device profile, and per segment backpropagated
      the executor's own overhead (measured: a one-level ``double`` over the probe window in 8
      segments, minus what the lines above predict)
    offload: ceil(T / chunk) * a_o + b_o * T, (a_o, b_o) timed under offload to each slow tier

``rank(model, inputs)`` returns the table (``spiketrain plan`` prints it); ``run`` trains
with the first feasible row and records the table and the reason in the report's notes.
"""
from __future__ import annotations

import inspect

import torch

from ..hardware.backends import backend_for
from ..hardware.units import format_size
from ..models.base import state_detach, state_nbytes
from . import inputs as inp
from .base import BudgetError, Strategy
from .executor import REDUCTIONS, apply_reduce
from .planning import Candidate, PlanContext, choose, fit_line, simulate, timed  # noqa: F401
from .registry import get, register, registered, resolve
from .scheduled import ScheduledStrategy, saved_model


def describes_candidates(cls) -> bool:
    """True when ``cls`` overrides :meth:`Strategy.candidates`."""
    return getattr(cls.candidates, "__func__", None) is not Strategy.candidates.__func__


def accepts(cls, option: str) -> bool:
    """True when a constructor in ``cls``'s hierarchy names ``option`` as a parameter."""
    for k in cls.__mro__:
        init = k.__dict__.get("__init__")
        if init is not None and k is not object and option in inspect.signature(init).parameters:
            return True
    return False


@register("auto")
class Auto(Strategy):
    """Pick the fastest strategy that fits ``budget``. Options: ``candidates`` (names or
    class paths; default every registered strategy that describes candidates),
    ``probe_steps`` (default 128: calls of 1/8, 3/8 and all of ``probe_steps`` steps are
    timed), ``reduce`` (as for checkpoint), ``offload_margin`` (offload costs at least this
    fraction more than BPTT per step, default 0.05), ``backend`` (name or instance; default
    the backend of the model's device)."""

    def __init__(self, budget=None, candidates=None, probe_steps: int = 128,
                 reduce: str | None = None, offload_margin: float = 0.05, backend=None,
                 **options):
        super().__init__(budget=budget, **options)
        if candidates is not None:
            if isinstance(candidates, str):
                candidates = [candidates]
            for c in candidates:
                try:
                    cls = resolve(c)
                except (ValueError, TypeError, ImportError) as e:
                    raise ValueError(f"auto: unknown candidate {c!r}: {e}") from None
                if not describes_candidates(cls):
                    raise ValueError(f"auto: strategy {c!r} describes no candidates (it has no "
                                     f"'candidates' classmethod); choose from {self.considered()}")
        if reduce not in REDUCTIONS:
            raise ValueError(f"unknown reduce {reduce!r}; choose one of {REDUCTIONS}")
        self.names = None if candidates is None else tuple(candidates)
        self.probe_steps, self.reduce, self.backend = probe_steps, reduce, backend
        self.offload_margin = offload_margin
        self.table: list[Candidate] = []

    @staticmethod
    def considered() -> list[str]:
        """Names of the registered strategies that describe candidates."""
        return [n for n, c in registered().items() if describes_candidates(c)]

    def _classes(self) -> list[tuple[str, type]]:
        names = self.considered() if self.names is None else self.names
        return [(n, resolve(n)) for n in names]

    # --- probe -----------------------------------------------------------------------------
    def _windows(self, model, inputs):
        T = inp.length(inputs)
        k = max(1, min(self.probe_steps, T))
        lengths = sorted({max(1, k // 8), max(1, (3 * k) // 8), k})
        params = [p for p in model.parameters() if p.requires_grad]
        dtype = params[0].dtype if params else torch.get_default_dtype()
        return k, lengths, {L: inp.window(model, inputs, 0, L, dtype) for L in lengths}

    def probe(self, model, inputs, state) -> dict:
        """Seconds of one call over ``L`` steps as ``(a, b)`` for ``a + b * L``: no graph
        ("f"), graph + backward ("g"); "k" = steps probed, "c_f"/"c_g" per step."""
        return self._probe(model, inputs, state)[0]

    def _probe(self, model, inputs, state):
        k, lengths, xs = self._windows(model, inputs)
        params = [p for p in model.parameters() if p.requires_grad]

        def nograd(L):
            with torch.no_grad():
                model.chunk(state, xs[L])

        def graph(L):
            with torch.enable_grad():
                _, y = model.chunk(state_detach(state, True), xs[L])
                torch.autograd.grad(y.sum(), params, allow_unused=True)

        out = {"k": k, **fit_line(lengths, {"f": nograd, "g": graph})}
        out["c_f"], out["c_g"] = out["f"][1], out["g"][1]  # per-step figures (plan command)
        return out, lengths, xs

    def _executor_overhead(self, model, xs, state, params, cost, backend, prices) -> float:
        """Seconds per segment the schedule executor adds to the model's own calls (planning,
        tier transfers, checks, autograd set-up): a one-level ``double`` over the probe window
        in 8 segments, timed (best of 5) minus what the call model predicts for its schedule."""
        seg = max(1, inp.length(xs) // 8)
        s = get("double", period=seg, fine=seg, backend=backend)

        def run():
            with torch.enable_grad():
                y = s.run(model, xs, state)
                torch.autograd.grad(y.sum(), params, allow_unused=True)

        run()
        t = min(timed(run, 1) for _ in range(5))
        plan = s.make_plan(model, xs, state)
        _, pred = simulate(plan, {**cost, "seg": 0.0}, s.chunk_steps, state_nbytes(state), prices)
        return max(0.0, (t - pred) / max(1, len(plan.bounds) - 1))

    @staticmethod
    def slow_tier_prices(backend) -> dict[str, float]:
        """Seconds per byte of each slow tier: 1 / its bandwidth in the backend's profile."""
        prof = backend.profile()
        return {t: prof.seconds_per_byte(t) for t in backend.slow_tiers if prof.bandwidth.get(t)}

    # --- ranking ---------------------------------------------------------------------------
    def rank(self, model, inputs, state=None) -> list[Candidate]:
        """Every candidate with its plan, bytes per tier, feasibility and estimated seconds
        per training step, feasible ones first by estimated time."""
        inp.check_inputs(inputs)
        if state is None:
            state = model.init_state(inp.batch_size(inputs))
        backend = backend_for(ScheduledStrategy._device(model, inputs), self.backend)
        saved = saved_model(model, inputs, state)
        pr, lengths, xs = self._probe(model, inputs, state)
        self.probe_result = pr
        prices = self.slow_tier_prices(backend)
        params = [p for p in model.parameters() if p.requires_grad]
        k = pr["k"]

        def overhead():
            if k < 16:
                return 0.0
            return self._executor_overhead(model, xs[k], state, params, pr, backend, prices)

        ctx = PlanContext(inp.length(inputs), state_nbytes(state), saved, backend, dict(self.budget),
                          model, inputs, state, pr, prices,
                          options={"offload_margin": self.offload_margin, "reduce": self.reduce},
                          lengths=lengths, windows=xs, segment_overhead=overhead)
        rows: list[Candidate] = []
        for name, cls in self._classes():
            for c in cls.candidates(ctx):
                c.name = name
                rows.append(c)
        choose(rows, self.budget)
        self.table = rows
        return rows

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
        cls = resolve(best.name)
        opts = dict(best.options)
        reduced = self.reduce is not None and accepts(cls, "reduce")
        if reduced:
            opts["reduce"] = self.reduce
        if self.backend is not None and accepts(cls, "backend"):
            opts["backend"] = self.backend
        strat = get(best.name, budget=self.budget, **opts)
        strat.report.strategy = best.name
        self.chosen = strat
        self.report = strat.report
        y = strat.run(model, inputs, state)
        self.report.notes["auto"] = {"choice": best.name, "options": best.options, "why": best.why,
                                     "estimated_s": best.est_s, "table": self.format_table(rows)}
        if self.reduce and not reduced:
            y = apply_reduce(y, self.reduce)
        return y
