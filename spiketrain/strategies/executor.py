"""The schedule executor: runs checkpoint-schedule actions on torch states and tiers.

A schedule (from ``checkpoint_schedules`` or one of spiketrain's own generators) speaks
in *blocks*: block ``k`` covers time steps ``bounds[k]:bounds[k+1]``. Its actions are

- ``Forward(n0, n1, write_ics, write_adj_deps, storage)``: store the working state at
  ``n0`` in ``storage`` if ``write_ics``; advance the working state from block ``n0`` to
  ``n1`` (no graph), or, if ``write_adj_deps``, with grad enabled keeping the graph
  for the coming ``Reverse``.
- ``Reverse(n1, n0)``: backpropagate blocks ``n0..n1`` through the kept graph.
- ``Copy``/``Move(n, from, to)``: load a stored state into the working state (``to`` =
  WORK), copy it to another tier, or delete it (``to`` = NONE).
- ``EndForward`` / ``EndReverse``.

The executor is attached to autograd by :class:`Unrolled`, a custom autograd Function:
its forward runs the schedule up to ``EndForward`` under ``no_grad`` and returns the
outputs ``[T, B, ...]``; its backward runs the rest and returns the gradients of the
parameters, of the dense input (if it requires grad) and of the initial state (if it
requires grad), so ordinary ``loss.backward()`` and DDP gradient hooks work as usual.

Every step is computed with ``model.chunk`` in the forward and in every recomputation,
so outputs are bit-identical to BPTT's. Recomputation is verified: the per-step output
checksums of every recomputed block must equal those of the first forward, otherwise
the model's ``step`` is not pure and a clear error is raised.
"""
from __future__ import annotations

import math
from typing import Any, Iterable

import torch
from checkpoint_schedules import (Copy, EndForward, EndReverse, Forward, Move, Reverse,
                                  StorageType)
from torch import Tensor

from ..hardware.tiers import Tiers
from ..models.base import state_flatten, state_unflatten
from . import inputs as inp
from .bptt import SavedBytes

REDUCTIONS = (None, "sum", "mean", "max", "last")


def apply_reduce(y: Tensor, how: str | None) -> Tensor:
    """``y [T, B, ...]`` reduced over time like ``reduce=`` does inside the strategies."""
    if how is None:
        return y
    if how == "sum":
        return y.sum(0)
    if how == "mean":
        return y.mean(0)
    if how == "max":
        return y.max(0).values
    if how == "last":
        return y[-1]
    raise ValueError(f"unknown reduce {how!r}; choose one of {REDUCTIONS}")


class ImpureStepError(RuntimeError):
    """Recomputing a segment gave different outputs than the first forward."""


# saved_tensors_hooks counting every distinct storage autograd saves, except ``exclude``
# (parameters, start state, inputs): the same counter BPTT reports with.
SavedCounter = SavedBytes


def block_bounds(T: int, block: int) -> list[int]:
    """Block boundaries ``[0, block, 2 block, ..., T]`` (the last block may be shorter)."""
    if block <= 0:
        raise ValueError(f"segment/block length must be a positive integer, got {block}")
    return list(range(0, T, block)) + [T]


def float_leaves(state) -> list[int]:
    leaves, _ = state_flatten(state)
    return [i for i, t in enumerate(leaves) if isinstance(t, Tensor) and t.is_floating_point()]


class Executor:
    """Runs one schedule over one unroll. ``storage`` maps StorageType -> tier name."""

    def __init__(self, model, inputs, state, schedule: Iterable, bounds: list[int], tiers: Tiers,
                 storage: dict[StorageType, str], reduce: str | None = None, verify: bool = True,
                 chunk_steps: int = 512, trim=None):
        if reduce not in REDUCTIONS:
            raise ValueError(f"unknown reduce {reduce!r}; choose one of {REDUCTIONS}")
        self.model, self.inputs, self.schedule = model, inputs, iter(schedule)
        self.bounds, self.tiers, self.storage = bounds, tiers, storage
        self.reduce, self.verify, self.chunk_steps = reduce, verify, max(1, chunk_steps)
        self.T = bounds[-1]
        self.nb = len(bounds) - 1
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.dtype = self.params[0].dtype if self.params else torch.get_default_dtype()
        self.x_grad = inp.is_dense(inputs) and inputs.requires_grad
        leaves, self.spec = state_flatten(state)
        self.state_grad_idx = [i for i, t in enumerate(leaves)
                               if isinstance(t, Tensor) and t.requires_grad]
        self._state0 = leaves
        self.work = [t.detach() if isinstance(t, Tensor) else t for t in leaves]
        self.n = 0
        self.phase = "forward"
        self.deps = None
        self.sums: Tensor | None = None
        self.forward_steps = 0
        self.recomputed = 0
        self.out = None
        self.finalize_pending = getattr(self.schedule, "max_n", 0) is None
        self.trim = trim or (lambda: None)  # heap.Trimmer: bounds heap fragmentation on long runs

    # --- helpers -----------------------------------------------------------------------------
    def _t(self, n: int) -> int:
        return self.bounds[min(n, self.nb)]

    def _tier(self, st: StorageType):
        name = self.storage.get(st)
        if name is None:
            raise RuntimeError(f"schedule uses storage {st!r} that this strategy did not map")
        return self.tiers[name]

    def _x(self, t0: int, t1: int):
        return inp.window(self.model, self.inputs, t0, t1, dtype=self.dtype)

    def _step_sums(self, y: Tensor) -> Tensor:
        return y.detach().reshape(y.shape[0], -1).sum(1, dtype=torch.float64)

    def _record(self, t0: int, y: Tensor) -> None:
        """First forward: keep outputs (or their reduction) and per-step checksums."""
        L = y.shape[0]
        if self.sums is None:
            self.sums = torch.empty(self.T, dtype=torch.float64, device=y.device)
            self.yshape = tuple(y.shape[1:])
            if self.reduce is None:
                self.out = y.new_empty((self.T,) + self.yshape)
            elif self.reduce == "max":
                self.out = torch.full(self.yshape, -math.inf, dtype=y.dtype, device=y.device)
                self.argmax = torch.zeros(self.yshape, dtype=torch.long, device=y.device)
            else:
                self.out = y.new_zeros(self.yshape)
        if self.verify:
            self.sums[t0:t0 + L] = self._step_sums(y)
        y = y.detach()
        if self.reduce is None:
            self.out[t0:t0 + L] = y
        elif self.reduce == "max":
            v, i = y.max(0)
            better = v > self.out
            self.out = torch.where(better, v, self.out)
            self.argmax = torch.where(better, i + t0, self.argmax)
        elif self.reduce in ("sum", "mean"):
            self.out += y.sum(0)
        elif self.reduce == "last" and t0 + L == self.T:
            self.out = y[-1].clone()

    def _check(self, t0: int, y: Tensor) -> None:
        if not self.verify:
            return
        s = self._step_sums(y)
        ref = self.sums[t0:t0 + y.shape[0]]
        same = (s == ref) | (s.isnan() & ref.isnan())
        if not bool(same.all()):
            bad = t0 + int((~same).nonzero()[0])
            raise ImpureStepError(
                f"recomputing step {bad} gave different outputs than the first forward: "
                f"{type(self.model).__name__}.step is not a pure function of (parameters, state, "
                f"x_t) (it changes hidden module state or uses unseeded randomness). Keep all "
                f"state in the explicit state returned by step, or use strategy='bptt'/'offload'")

    # --- actions -----------------------------------------------------------------------------
    def _advance(self, n0: int, n1: int) -> None:
        """No-graph advance of the working state from block n0 to n1 (in bounded chunks)."""
        t0, t1 = self._t(n0), self._t(n1)
        state = state_unflatten(self.work, self.spec)
        with torch.no_grad():
            t = t0
            while t < t1:
                te = min(t1, t + self.chunk_steps)
                state, y = self.model.chunk(state, self._x(t, te))
                if self.phase == "forward":
                    self._record(t, y)
                else:
                    self._check(t, y)
                t = te
        self.work = state_flatten(state)[0]
        self._count(t1 - t0)

    def _count(self, steps: int) -> None:
        if self.phase == "forward":
            self.forward_steps += steps
        else:
            self.recomputed += steps

    def _taped(self, n0: int, n1: int) -> None:
        """Advance blocks n0..n1 with grad enabled, keeping the graph (adjoint deps)."""
        t0, t1 = self._t(n0), self._t(n1)
        fidx = float_leaves(state_unflatten(self.work, self.spec))
        s0 = list(self.work)
        for i in fidx:
            s0[i] = s0[i].detach().requires_grad_(True)
        xs = self._x(t0, t1)
        if self.x_grad:
            xs = xs.detach().requires_grad_(True)
        excl = self.params + [s0[i] for i in fidx]
        if inp.is_dense(self.inputs):
            excl += [xs, self.inputs]
        with torch.enable_grad(), SavedCounter(exclude=excl) as saved:
            s1, y = self.model.chunk(state_unflatten(s0, self.spec), xs)
        self.tiers.device.charge(saved.bytes)
        if self.phase == "forward":
            self._record(t0, y)
        else:
            self._check(t0, y)
        self.deps = (n0, n1, s0, fidx, xs, state_flatten(s1)[0], y, saved.bytes)
        self.work = [t.detach() if isinstance(t, Tensor) else t for t in state_flatten(s1)[0]]
        self._count(t1 - t0)

    def _gy(self, t0: int, t1: int, y: Tensor) -> Tensor:
        g = self.grad_out
        L = t1 - t0
        if self.reduce is None:
            return g[t0:t1]
        if self.reduce == "sum":
            return g.unsqueeze(0).expand((L,) + tuple(g.shape))
        if self.reduce == "mean":
            return (g / self.T).unsqueeze(0).expand((L,) + tuple(g.shape))
        if self.reduce == "last":
            out = torch.zeros_like(y)
            if t1 == self.T:
                out[-1] = g
            return out
        steps = torch.arange(t0, t1, device=g.device).view((L,) + (1,) * g.dim())
        return torch.where(steps == self.argmax.unsqueeze(0), g.unsqueeze(0), g.new_zeros(()))

    def _reverse(self, n1: int, n0: int) -> None:
        if self.deps is None or self.deps[0] != n0 or self.deps[1] != n1:
            raise RuntimeError(f"schedule reverses blocks {n0}..{n1} without their graph")
        _, _, s0, fidx, xs, s1, y, nbytes = self.deps
        t0, t1 = self._t(n0), self._t(n1)
        outs, grads = [y], [self._gy(t0, t1, y)]
        if self.g_state is not None:
            for t, g in zip(s1, self.g_state):
                if g is not None and isinstance(t, Tensor) and t.requires_grad:
                    outs.append(t)
                    grads.append(g)
        wrt = [s0[i] for i in fidx] + ([xs] if self.x_grad else []) + self.params
        res = torch.autograd.grad(outs, wrt, grads, allow_unused=True)
        g_state = [None] * len(s0)
        for k, i in enumerate(fidx):
            g_state[i] = res[k]
        self.g_state = g_state
        k = len(fidx)
        if self.x_grad:
            if res[k] is not None:
                self.gx[t0:t1] = res[k]
            k += 1
        for j, g in enumerate(res[k:]):
            if g is not None:
                self.gp[j] = g if self.gp[j] is None else self.gp[j] + g
        self.deps = None
        self.tiers.device.release(nbytes)

    def _load(self, a, pop: bool) -> None:
        tier = self._tier(a.from_storage)
        if a.to_storage == StorageType.NONE:
            tier.free(a.n)
            return
        tensors = tier.get(a.n, device=self.tiers.compute_device, pop=pop)
        if a.to_storage == StorageType.WORK:
            self.work = tensors
            self.n = a.n
        else:
            self._tier(a.to_storage).put(a.n, tensors)

    def _apply(self, a) -> bool:
        """Run one action; True when the current phase ends."""
        if isinstance(a, Forward):
            if a.n0 != self.n:
                raise RuntimeError(f"schedule advances from block {a.n0} but the state is at {self.n}")
            if a.write_ics:
                self._tier(a.storage).put(a.n0, list(self.work))
            n1 = min(a.n1, self.nb)
            if a.write_adj_deps:
                self._taped(a.n0, n1)
            else:
                self._advance(a.n0, n1)
            self.n = n1
            self.trim()
            if self.finalize_pending and self.n >= self.nb:
                self.schedule.finalize(self.nb)
                self.finalize_pending = False
        elif isinstance(a, Reverse):
            self._reverse(a.n1, a.n0)
            self.trim()
        elif isinstance(a, Copy):
            self._load(a, pop=False)
        elif isinstance(a, Move):
            self._load(a, pop=True)
        elif isinstance(a, EndForward):
            return True
        elif isinstance(a, EndReverse):
            return True
        else:
            raise TypeError(f"unexpected schedule action {a!r}")
        return False

    # --- phases --------------------------------------------------------------------------------
    def forward(self) -> Tensor:
        self.phase = "forward"
        for a in self.schedule:
            if self._apply(a):
                break
        if self.forward_steps != self.T:
            raise RuntimeError(f"schedule covered {self.forward_steps} of {self.T} steps")
        out = self.out
        if self.reduce == "mean":
            out = out / self.T
        return out

    def backward(self, grad_out: Tensor):
        self.phase = "reverse"
        self.grad_out = grad_out
        self.g_state = None
        self.gp: list[Tensor | None] = [None] * len(self.params)
        self.gx = None
        if self.x_grad:
            self.gx = torch.zeros(self.inputs.shape, dtype=self.inputs.dtype, device=self.inputs.device)
        for a in self.schedule:
            if self._apply(a):
                break
        g_state = [None] * len(self.state_grad_idx)
        if self.g_state is not None:
            g_state = [self.g_state[i] for i in self.state_grad_idx]
        return self.gx, g_state, self.gp


class Unrolled(torch.autograd.Function):
    """Attach an :class:`Executor` to autograd (see the module docstring)."""

    @staticmethod
    def forward(ctx, ex: Executor, on_done, x, *tensors):
        ctx.ex, ctx.on_done = ex, on_done
        try:
            return ex.forward()
        except BaseException:
            on_done(ex, failed=True)
            raise

    @staticmethod
    def backward(ctx, grad_out):
        ex = ctx.ex
        try:
            gx, g_state, gp = ex.backward(grad_out)
        except BaseException:
            ctx.on_done(ex, failed=True)
            raise
        ctx.on_done(ex, failed=False)
        ctx.ex = None
        return (None, None, gx, *g_state, *gp)


def run_executor(ex: Executor, on_done) -> Tensor:
    """Run ``ex`` attached to autograd; ``on_done(ex, failed)`` is called after the backward
    (or on an error, or at once when nothing requires grad)."""
    needs_grad = torch.is_grad_enabled() and bool(ex.params or ex.x_grad or ex.state_grad_idx)
    if not needs_grad:  # inference: one pass, nothing kept
        try:
            ex._advance(0, ex.nb)
            out = ex.out / ex.T if ex.reduce == "mean" else ex.out
        finally:
            on_done(ex, failed=False)
        return out
    x = ex.inputs if ex.x_grad else None
    return Unrolled.apply(ex, on_done, x, *[ex._state0[i] for i in ex.state_grad_idx], *ex.params)
