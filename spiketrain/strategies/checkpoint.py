"""``checkpoint``: keep the state every ``segment`` steps, recompute each segment in backward.

Forward keeps the state at the start of every segment but the last in the ``device``
tier and the last segment's graph; backward walks the segments from the last to the
first: load the segment's start state, recompute it with grad enabled (full storage),
backpropagate it, hand the state gradient to the previous segment.

Device peak (exact): ``max_k (k * S + saved(L_k))`` for segment ``k`` of length ``L_k``
(``S`` = state bytes, ``saved(L)`` = bytes autograd saves over ``L`` steps).
Recomputed steps: ``T - L_last``.
"""
from __future__ import annotations

import math

from checkpoint_schedules import EndForward, EndReverse, Forward, Move, Reverse, StorageType

from ..hardware.units import format_size
from .executor import block_bounds
from .registry import register
from .scheduled import Plan, SavedModel, ScheduledStrategy


def segment_schedule(nb: int):
    """Actions of plain segment checkpointing over ``nb`` segments."""
    for k in range(nb - 1):
        yield Forward(k, k + 1, True, False, StorageType.RAM)
    yield Forward(nb - 1, nb, False, True, StorageType.WORK)
    yield EndForward()
    yield Reverse(nb, nb - 1, True)
    for k in range(nb - 2, -1, -1):
        yield Move(k, StorageType.RAM, StorageType.WORK)
        yield Forward(k, k + 1, False, True, StorageType.WORK)
        yield Reverse(k + 1, k, True)
    yield EndReverse()


MAX_DEFAULT_SEGMENT = 1024  # longer segments save no call overhead and lose cache locality


def default_segment(T: int, S: int, saved: SavedModel) -> int:
    """``ceil(sqrt(T))``, or longer where a state outweighs a step's saved bytes (the RSNN's
    backward keeps bits per step but a float state): ``sqrt(T S / s)`` minimises
    ``k S + saved(T / k)``, capped at :data:`MAX_DEFAULT_SEGMENT` steps; rounded up to whole
    blocks of the model's ``step_block`` steps."""
    root = max(1, math.ceil(math.sqrt(T)))
    balanced = math.ceil(math.sqrt(T * S / max(1, saved.per_step)))
    seg = max(root, min(balanced, MAX_DEFAULT_SEGMENT))
    g = max(1, getattr(saved, "block", 1))   # whole blocks: none computed twice at a boundary
    return min(T, -(-seg // g) * g)


def segment_peak(bounds: list[int], S: int, saved: SavedModel) -> int:
    """Device-tier peak of :func:`segment_schedule` (see module docstring)."""
    return max(k * S + saved(bounds[k + 1] - bounds[k]) for k in range(len(bounds) - 1))


def uniform_peak(T: int, seg: int, S: int, saved: SavedModel) -> int:
    """:func:`segment_peak` for ``seg``-step segments (the last one shorter), in O(1)."""
    seg = min(seg, T)
    nb = -(-T // seg)
    last = T - (nb - 1) * seg
    full = (nb - 2) * S + saved(seg) if nb >= 2 else 0
    return max(full, (nb - 1) * S + saved(last))


@register("checkpoint")
class Checkpoint(ScheduledStrategy):
    """Segment checkpointing. ``segment``: steps per segment (default ``ceil(sqrt(T))``, longer
    - ``ceil(sqrt(T * S / s))``, the segment with the smallest device peak, at most 1024 - when
    the state ``S`` outweighs the bytes ``s`` saved per step; under a device budget the largest
    segment up to that which fits)."""

    def __init__(self, segment: int | None = None, **options):
        super().__init__(**options)
        if segment is not None and (not isinstance(segment, int) or isinstance(segment, bool)
                                    or segment <= 0):
            raise ValueError(f"checkpoint segment must be a positive integer, got {segment!r}")
        self.segment = segment

    def choose_segment(self, T: int, S: int, saved: SavedModel) -> int:
        if self.segment is not None:
            return min(self.segment, T)
        seg = default_segment(T, S, saved)
        cap = self.budget.get("device")
        if cap is None or uniform_peak(T, seg, S, saved) <= cap:
            return seg
        # the segment minimising the device peak is near sqrt(T S / per_step); take the
        # largest segment below it that fits (fewest backward calls)
        best = max(1, round(math.sqrt(T * S / max(1, saved.per_step))))
        for cand in range(min(best, T), 0, -1):
            if uniform_peak(T, cand, S, saved) <= cap:
                return cand
        return best

    def plan_options(self, plan):
        return {"segment": plan.notes["segment"]}

    def plan(self, T, state_bytes, saved, backend):
        seg = self.choose_segment(T, state_bytes, saved)
        bounds = block_bounds(T, seg)
        nb = len(bounds) - 1
        need = {"device": uniform_peak(T, seg, state_bytes, saved)}
        return Plan(lambda: segment_schedule(nb), bounds, {StorageType.RAM: "device"}, need,
                    f"checkpoint(segment={seg}, checkpoints={nb - 1}, "
                    f"device={format_size(need['device'])})",
                    {"segment": seg, "checkpoints": {"device": nb - 1}})
