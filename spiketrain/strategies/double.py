"""``double``: double checkpointing on two tiers (Bencheikh, Finkbeiner, Neftci: "Optimal
Gradient Checkpointing for Sparse and Recurrent Architectures using Off-Chip Memory").

Coarse checkpoints every ``period`` steps go to the slow, large tier (``host`` next to an
accelerator, ``disk`` on a CPU-only machine). Reversing one period: its start state is read
back once, the period is recomputed once storing fine checkpoints every ``fine`` steps in
the fast ``device`` tier, and each fine segment is recomputed with full storage for its
backward. With ``fine_slots`` below ``period / fine - 2`` the fine checkpoints inside a
period follow a binomial schedule instead (``checkpoint_schedules``' two-level schedule).
When the slow tier can hold a state every ``fine`` steps the default period is ``fine``:
one level, every checkpoint on the slow tier, each segment recomputed once (the device
tier holds one segment's graph and no checkpoint); a given ``period`` or a slow-tier budget
too small for that gives the two-level schedule.

Checkpoints held at most: slow tier ``ceil(T / period)``, device tier
``min(fine_slots, period / fine - 2)``; device peak ``<= fine_ckpts * S + saved(fine)``.
"""
from __future__ import annotations

import math

from checkpoint_schedules import StorageType, TwoLevelCheckpointSchedule

from ..hardware.units import format_size
from .checkpoint import default_segment, segment_schedule
from .executor import block_bounds
from .registry import register
from .scheduled import Plan, ScheduledStrategy


@register("double")
class Double(ScheduledStrategy):
    """Two-level checkpointing. ``period``: steps between coarse (slow-tier) checkpoints;
    ``fine``: steps per fine segment; ``fine_slots``: fine checkpoints kept in ``device``
    (default: all of a period); ``slow``: "disk" or "host" (default: the backend's slow tier,
    host next to an accelerator, else disk).
    Defaults: ``fine`` = checkpoint's default segment (under a device budget the longest
    fine segment that fits) and ``period = fine`` when the slow tier holds ``T / fine`` states (no period
    recomputation: fewest recomputed steps), else ``period = fine * ceil(T^(1/4))`` or the
    nearest that fits the slow-tier budget."""

    def __init__(self, period: int | None = None, fine: int | None = None,
                 fine_slots: int | None = None, slow: str | None = None, **options):
        super().__init__(**options)
        for name, v in (("period", period), ("fine", fine), ("fine_slots", fine_slots)):
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v <= 0):
                raise ValueError(f"double {name} must be a positive integer, got {v!r}")
        if slow not in (None, "disk", "host"):
            raise ValueError(f"double slow tier must be 'disk' or 'host', got {slow!r}")
        if period is not None and fine is not None and period < fine:
            raise ValueError(f"double period ({period}) must be >= fine ({fine})")
        self.period, self.fine, self.fine_slots, self.slow = period, fine, fine_slots, slow

    @staticmethod
    def _need(T, q, P, slots, S, saved):
        nb = math.ceil(T / q)
        fine = min(slots, max(0, min(P, nb) - 2))
        return fine, math.ceil(nb / P), fine * S + saved(min(q, T))

    def choose(self, T, S, saved, slow):
        """(fine steps q, blocks per period P, fine slots) fitting the budget."""
        dev_cap = self.budget.get("device")
        slow_cap = self.budget.get(slow)
        q0 = default_segment(T, S, saved)  # fine segments as long as checkpoint's
        root = max(2, math.ceil(T ** 0.25))          # blocks per period
        qs = [self.fine] if self.fine else sorted({max(1, q0 >> k) for k in range(0, 20)}, reverse=True)
        if not self.period and not self.fine_slots:
            # period = fine (one level: every fine checkpoint on the slow tier, no period
            # recomputation) whenever the slow tier holds them: fewest recomputed steps
            for q in qs:
                nb = math.ceil(T / q)
                if ((dev_cap is None or saved(min(q, T)) <= dev_cap)
                        and (slow_cap is None or max(0, nb - 1) * S <= slow_cap)):
                    return q, 1, 1
        for q in qs:
            if self.period:
                Ps = [max(1, self.period // q)]
            else:
                P0 = root
                Ps = sorted({max(2, P0 >> k) for k in range(0, 16)} | {max(2, P0 << k) for k in range(1, 8)})
                Ps = [P for P in sorted(Ps, key=lambda P: abs(P - P0))]
            for P in Ps:
                slots = self.fine_slots if self.fine_slots else max(1, P - 2)
                fine, coarse, dev = self._need(T, q, P, slots, S, saved)
                if dev_cap is not None and dev > dev_cap and not self.fine_slots:
                    slots = max(1, (dev_cap - saved(min(q, T))) // max(1, S))  # binomial in period
                    fine, coarse, dev = self._need(T, q, P, slots, S, saved)
                if (dev_cap is None or dev <= dev_cap) and (slow_cap is None or coarse * S <= slow_cap):
                    return q, P, slots
        q = qs[-1]
        P = max(1, self.period // q) if self.period else max(2, math.ceil(math.sqrt(T / q)))
        return q, P, self.fine_slots or max(1, P - 2)

    def plan_options(self, plan):
        return {k: plan.notes[k] for k in ("period", "fine", "fine_slots") if plan.notes[k] is not None}

    def plan(self, T, state_bytes, saved, backend):
        slow = self.slow or backend.slow_tier
        q, P, slots = self.choose(T, state_bytes, saved, slow)
        q = min(q, T)
        bounds = block_bounds(T, q)
        if P == 1:  # one level: segment checkpointing with the checkpoints on the slow tier
            nb = len(bounds) - 1
            need = {"device": saved(bounds[-1] - bounds[-2]) if nb == 1 else
                    max(saved(q), saved(bounds[-1] - bounds[-2])), slow: (nb - 1) * state_bytes}
            return Plan(lambda: segment_schedule(nb), bounds, {StorageType.RAM: slow}, need,
                        f"double(period={q}, fine={q}, slow={slow}: {nb - 1} checkpoints = "
                        f"{format_size(need[slow])}, device <= {format_size(need['device'])})",
                        {"period": q, "fine": q, "fine_slots": None, "slow": slow,
                         "checkpoints": {"device": 0, slow: nb - 1}})
        fine, coarse, dev = self._need(T, q, P, slots, state_bytes, saved)
        need = {"device": dev, slow: coarse * state_bytes}
        make = lambda: TwoLevelCheckpointSchedule(P, slots, binomial_storage=StorageType.RAM)  # noqa: E731
        return Plan(make, bounds, {StorageType.RAM: "device", StorageType.DISK: slow}, need,
                    f"double(period={P * q}, fine={q}, fine_slots={slots}, slow={slow}: "
                    f"{coarse} coarse ckpts = {format_size(need[slow])}, <= {fine} fine ckpts, "
                    f"device <= {format_size(dev)})",
                    {"period": P * q, "fine": q, "fine_slots": slots, "slow": slow,
                     "checkpoints": {"device": fine, slow: coarse}})
