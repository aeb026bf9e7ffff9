"""Common machinery of the recomputing strategies (checkpoint, revolve, double).

A subclass turns (T, state bytes, saved-bytes model, backend) into a :class:`Plan`: block
boundaries, a schedule of actions, which tier each storage type maps to and the bytes
each tier will need. The plan is checked against the budget and the backend's tier
capacities BEFORE anything runs; the tiers come from the backend of the model's device
(:func:`spiketrain.hardware.backends.backend_for`), which also says which tier is the slow one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch

from ..hardware.backends import Backend, backend_for
from ..hardware.units import format_size
from ..models.base import state_detach, state_flatten, state_nbytes
from . import inputs as inp
from .base import BudgetError, Strategy
from . import heap
from .executor import REDUCTIONS, Executor, SavedCounter, float_leaves, run_executor


@dataclass
class SavedModel:
    """Bytes autograd saves for a graph over ``L`` steps started from a checkpoint
    (excluding parameters, inputs and the start state). Exact for the lengths measured
    with :meth:`measure`, else the affine estimate ``first + (L - 1) * per_step``."""

    first: int
    per_step: int
    probe: Callable[[int], int] | None = None
    exact: dict = field(default_factory=dict)
    block: int = 1   # the model's ``step_block``: its calls run whole blocks of this many steps

    def __call__(self, L: int) -> int:
        if L <= 0:
            return 0
        if L in self.exact:
            return self.exact[L]
        pts = sorted(self.exact.items()) or [(1, self.first), (2, self.first + self.per_step)]
        if len(pts) < 2:
            return self.first + (L - 1) * self.per_step
        lo = [p for p in pts if p[0] < L]
        hi = [p for p in pts if p[0] > L]
        (a, fa), (b, fb) = (lo[-1], hi[0]) if lo and hi else (pts[-2], pts[-1])
        return int(math.ceil(fa + (L - a) * (fb - fa) / (b - a)))

    def measure(self, lengths) -> bool:
        """Measure the given lengths exactly; True if anything new was measured."""
        new = [L for L in set(lengths) if L > 0 and L not in self.exact and self.probe]
        for L in new:
            self.exact[L] = self.probe(L)
        return bool(new)


def probe_saved(model, inputs, state, steps: int = 2, only: int | None = None) -> list[int]:
    """Exact saved bytes for graphs over 1..steps steps (or only ``only`` steps), with the
    same exclusions as the executor."""
    params = [p for p in model.parameters() if p.requires_grad]
    dtype = params[0].dtype if params else torch.get_default_dtype()
    out = []
    for L in ([only] if only else range(1, steps + 1)):
        L = min(L, inp.length(inputs))
        s0 = state_detach(state, requires_grad=True)
        xs = inp.window(model, inputs, 0, L, dtype=dtype)
        leaves = state_flatten(s0)[0]
        excl = params + [leaves[i] for i in float_leaves(s0)]
        if inp.is_dense(inputs):
            excl += [xs, inputs]
        with torch.enable_grad(), SavedCounter(exclude=excl) as c:
            model.chunk(s0, xs)
        out.append(c.bytes)
    return out


def saved_model(model, inputs, state) -> SavedModel:
    """Saved bytes over one and two blocks of the model's ``step_block`` steps (default 1). A
    model whose calls always compute whole blocks saves as much for one step as for a block:
    probing 1 and 2 steps would see no growth."""
    g = max(1, int(getattr(model, "step_block", 1)))
    T = inp.length(inputs)
    b1, b2 = (probe_saved(model, inputs, state, only=L)[0] for L in (g, 2 * g))
    per_step = -(-max(0, b2 - b1) // g)
    return SavedModel(max(0, b1 - (g - 1) * per_step), per_step,
                      lambda L: probe_saved(model, inputs, state, only=L)[0],
                      {min(g, T): b1, min(2 * g, T): b2}, block=g)


def open_tiers(strategy, backend: Backend, need: dict[str, int]):
    """``backend``'s tiers for ``strategy`` (its budget and scratch folder); refuses with
    :class:`BudgetError`, before anything runs, when ``need`` exceeds a tier's capacity."""
    tiers = backend.tiers(strategy.budget, scratch=strategy.scratch)
    over = tiers.over_capacity(need)
    if over:
        tiers.close()
        parts = ", ".join(f"{t}: needs {format_size(n)} > {backend.name} capacity {format_size(c)}"
                          for t, (n, c) in over.items())
        raise BudgetError(f"strategy {strategy.name!r} cannot fit the {backend.name!r} backend's "
                          f"tiers ({parts}); shorten the sequence or pick another strategy")
    return tiers


@dataclass
class Plan:
    """What a strategy will do: ``schedule`` (an iterable of actions), block ``bounds``,
    ``storage`` {StorageType: tier}, ``need`` {tier: bytes}, a one-line ``desc``."""

    schedule: Callable[[], Iterable]
    bounds: list[int]
    storage: dict
    need: dict[str, int]
    desc: str
    notes: dict[str, Any] = field(default_factory=dict)


class ScheduledStrategy(Strategy):
    """Base of the recomputing strategies. Common options:

    - ``budget``: {tier: size}; the plan must fit it or BudgetError is raised before running.
    - ``reduce``: None (outputs ``[T, B, ...]``) or "sum"/"mean"/"max"/"last": return the
      outputs reduced over time (``[B, ...]``), so very long runs never hold ``[T, B, ...]``.
    - ``verify``: check every recomputed step against the first forward (default True).
    - ``chunk_steps``: longest no-grad chunk densified at once (default 512).
    - ``scratch``: folder for the disk tier (default: a temporary folder, removed after).
    - ``backend``: the hardware backend (name or instance) owning the tiers; default the
      backend of the model's device.

    ``auto`` considers every subclass: :meth:`candidates` plans each of :meth:`variants`
    and prices its schedule with the probe's timings.
    """

    def __init__(self, budget=None, reduce: str | None = None, verify: bool = True,
                 chunk_steps: int = 512, scratch: str | None = None, backend=None, **options):
        super().__init__(budget=budget, **options)
        if reduce not in REDUCTIONS:
            raise ValueError(f"unknown reduce {reduce!r}; choose one of {REDUCTIONS}")
        self.reduce, self.verify, self.chunk_steps, self.scratch = reduce, verify, chunk_steps, scratch
        self.backend = backend

    def plan(self, T: int, state_bytes: int, saved: SavedModel, backend: Backend) -> Plan:
        """The plan for ``T`` steps of a ``state_bytes`` state on ``backend``'s tiers."""
        raise NotImplementedError

    # --- auto --------------------------------------------------------------------------------
    @classmethod
    def variants(cls, T: int) -> list[dict]:
        """Option sets ``auto`` plans (default: the strategy's own defaults)."""
        return [{}]

    def plan_options(self, plan: Plan) -> dict:
        """Options that reproduce ``plan`` (recorded by ``auto`` with its choice)."""
        return {}

    @classmethod
    def candidates(cls, ctx) -> list:
        """One candidate per :meth:`variants` entry: its plan under the budget, the bytes per
        tier, and the seconds its schedule costs at the probe's timings."""
        out = []
        for opts in cls.variants(ctx.T):
            s = cls(budget=ctx.budget, backend=ctx.backend, **opts)
            plan = s._plan_exact(ctx.T, ctx.state_bytes, ctx.saved, ctx.backend)
            rec, est = ctx.simulate(plan, s.chunk_steps)
            out.append(ctx.candidate({**opts, **s.plan_options(plan)}, plan.desc, plan.need,
                                     est, recomputed=rec))
        return out

    @staticmethod
    def _device(model, inputs) -> torch.device:
        if inp.is_dense(inputs):
            return inputs.device
        p = next(model.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    def backend_of(self, model, inputs) -> Backend:
        """The backend owning the tiers for this model and input."""
        return backend_for(self._device(model, inputs), self.backend)

    def make_plan(self, model, inputs, state=None) -> Plan:
        """The plan for these inputs (no training): used by ``run`` and by the planner."""
        inp.check_inputs(inputs)
        if state is None:
            state = model.init_state(inp.batch_size(inputs))
        return self._plan_exact(inp.length(inputs), state_nbytes(state),
                                saved_model(model, inputs, state), self.backend_of(model, inputs))

    def _plan_exact(self, T, S, saved, backend: Backend) -> Plan:
        """Plan, then measure the saved bytes of the chosen block lengths exactly and
        re-plan until the plan only uses measured lengths (at most a few rounds)."""
        plan = self.plan(T, S, saved, backend)
        for _ in range(3):
            lengths = {b - a for a, b in zip(plan.bounds[:-1], plan.bounds[1:])}
            if not saved.measure(lengths):
                break
            plan = self.plan(T, S, saved, backend)
        return plan

    def run(self, model, inputs, state=None):
        inp.check_inputs(inputs)
        if state is None:
            state = model.init_state(inp.batch_size(inputs))
        backend = self.backend_of(model, inputs)
        T = inp.length(inputs)
        plan = self._plan_exact(T, state_nbytes(state), saved_model(model, inputs, state), backend)
        self.check_budget(plan.need)
        tiers = open_tiers(self, backend, plan.need)
        rep = self.report
        rep.steps, rep.schedule = T, plan.desc
        rep.notes.update(plan.notes)
        rep.notes["predicted_peak_bytes"] = dict(plan.need)
        try:
            ex = Executor(model, inputs, state, plan.schedule(), plan.bounds, tiers, plan.storage,
                          reduce=self.reduce, verify=self.verify, chunk_steps=self.chunk_steps,
                          trim=heap.Trimmer())
        except BaseException:
            tiers.close()
            raise

        def on_done(ex: Executor, failed: bool) -> None:
            rep.peak_bytes = tiers.peak_bytes()
            rep.recomputed_steps = ex.recomputed
            rep.bytes_moved = tiers.bytes_moved()
            rep.notes["peak_checkpoints"] = {t.name: t.peak_count for t in tiers.used() if t.peak_count}
            if failed:
                rep.notes["failed"] = True
            tiers.close()

        return run_executor(ex, on_done)
