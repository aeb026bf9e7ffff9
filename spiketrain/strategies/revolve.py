"""``revolve``: Griewank's optimal binomial checkpointing with ``slots`` checkpoints.

With ``s`` slots and ``r`` recomputation sweeps a binomial schedule reverses up to
``C(s + r, s)`` blocks, and no schedule recomputes fewer steps (Griewank & Walther 2000).
Schedules come from ``checkpoint_schedules``: ``schedule="multistage"`` (default, the
binomial schedule, optionally spread over ``device`` slots and ``disk_slots`` on the slow
tier) or ``"hrevolve"`` (H-Revolve, ``device`` + slow tier); spiketrain's executor runs
their actions. One schedule step is a ``block`` of time steps (default 1).

Device peak: ``min(slots, n_blocks - 1) * S + saved(block)`` (the slots are all filled
before the first reverse step).
"""
from __future__ import annotations

import math

from checkpoint_schedules import HRevolve, MultistageCheckpointSchedule, StorageType

from ..hardware.units import format_size
from .executor import block_bounds
from .registry import register
from .scheduled import Plan, ScheduledStrategy

SCHEDULES = ("multistage", "hrevolve")


def binomial_extra_steps(n: int, s: int) -> int:
    """Minimal recomputed steps to reverse ``n`` steps with ``s`` checkpoints (closed form)."""
    if n <= 1:
        return 0
    s = max(1, min(s, n - 1))
    r = 0
    while math.comb(s + r, s) < n:
        r += 1
    return r * n - math.comb(s + r, s + 1)


@register("revolve")
class Revolve(ScheduledStrategy):
    """Binomial checkpointing. ``slots``: device checkpoints (default: as many as the device
    budget allows beyond one block's graph, else ``ceil(sqrt(n_blocks))``); ``disk_slots``:
    extra checkpoints on the slow tier; ``block``: time steps per schedule step."""

    def __init__(self, slots: int | None = None, block: int = 1, disk_slots: int = 0,
                 schedule: str = "multistage", **options):
        super().__init__(**options)
        for name, v, lo in (("slots", slots, 1), ("block", block, 1), ("disk_slots", disk_slots, 0)):
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < lo):
                raise ValueError(f"revolve {name} must be an integer >= {lo}, got {v!r}")
        if schedule not in SCHEDULES:
            raise ValueError(f"unknown revolve schedule {schedule!r}; choose one of {SCHEDULES}")
        self.slots, self.block, self.disk_slots, self.schedule_name = slots, block, disk_slots, schedule

    @classmethod
    def variants(cls, T):
        """One-step blocks are exact but slow in Python: ``sqrt(T)`` and ``T^(1/4)`` blocks."""
        return [{"block": max(1, math.ceil(math.sqrt(T)))}, {"block": max(1, math.ceil(T ** 0.25))}]

    def plan_options(self, plan):
        return {"slots": max(1, plan.notes["slots"]), "block": plan.notes["block"]}

    def plan(self, T, state_bytes, saved, backend):
        bounds = block_bounds(T, min(self.block, T))
        nb = len(bounds) - 1
        graph = saved(bounds[1] - bounds[0])
        slots = self.slots
        if slots is None:
            cap = self.budget.get("device")
            slots = max(1, math.ceil(math.sqrt(nb)))
            if cap is not None and state_bytes > 0:
                slots = max(1, min(nb - 1, (cap - graph) // state_bytes))
        used = max(0, min(slots, nb - 1))
        slow = backend.slow_tier
        disk = min(self.disk_slots, max(0, nb - 1))
        need = {"device": used * state_bytes + graph}
        if disk:
            need[slow] = disk * state_bytes
        if nb == 1:
            from .checkpoint import segment_schedule
            make = lambda: segment_schedule(1)  # noqa: E731
        elif self.schedule_name == "hrevolve":
            make = lambda: HRevolve(nb, max(1, slots), disk)  # noqa: E731
        else:
            make = lambda: MultistageCheckpointSchedule(nb, max(1, slots), disk)  # noqa: E731
        extra = binomial_extra_steps(nb, used + disk) * (bounds[1] - bounds[0])
        return Plan(make, bounds, {StorageType.RAM: "device", StorageType.DISK: slow}, need,
                    f"revolve({self.schedule_name}, slots={used}, disk_slots={disk}, "
                    f"block={bounds[1] - bounds[0]}, device={format_size(need['device'])})",
                    {"slots": used, "block": bounds[1] - bounds[0],
                     "checkpoints": {"device": used, slow: disk},
                     "predicted_recomputed_steps": extra})
