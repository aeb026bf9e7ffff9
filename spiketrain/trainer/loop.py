"""The training loop in pieces a distributed worker can reuse: one batch, one epoch, evaluation.

Every function takes the model as given (possibly wrapped, e.g. DistributedDataParallel), a
:class:`~spiketrain.trainer.tasks.Task` that owns the batch layout, the loss and the metrics,
and any iterable of batches (possibly a per-rank shard). The loop names no loss function.
Results are sums (loss, count, the task's metric state) so workers can all-reduce or merge
them before dividing.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch
from torch import Tensor

from .. import strategies as st_strategies
from ..models.base import unwrap
from ..strategies import unroll, unroll_online
from .tasks import Metrics, Task, get_task
from .tasks.classification import logits_of, step_ce  # noqa: F401  (public re-exports)


def to_device(x: Any, device: torch.device | None) -> Any:
    """Move a dense tensor or a sparse spike train (anything with ``.to``) to ``device``."""
    if device is None:
        return x
    return x.to(device)


def dense(x: Any) -> Tensor:
    """A dense ``[T, B, ...]`` tensor from a dense tensor or a sparse spike train."""
    return x if isinstance(x, Tensor) else x.dense()


def batch_loss(model, x, targets, strategy, task: Task | str | None = None
               ) -> tuple[Tensor, Tensor, Any]:
    """Forward one batch ``x [T, B, ...]`` under ``strategy`` for ``task``.

    Returns ``(loss_to_backward, loss_value, preds or None)``. Offline strategies:
    ``task.loss(model, outputs, targets)``. Online strategies (``strategy.online``): the
    task's per-step loss summed over time (``task.online``); ``loss_value`` is that sum times
    the task's scale (e.g. ``1 / T``), ``preds`` come from the strategy's running readout.
    """
    task = get_task(task or "classification")
    m = unwrap(model)
    if getattr(strategy, "online", False):
        spec = task.online(m, x, targets)
        if spec is None:
            raise ValueError(f"strategy {strategy.name!r} needs a per-step loss, which task "
                             f"{task.name!r} does not define; use an offline strategy (bptt, "
                             f"checkpoint, double, ...)")
        res = unroll_online(model, x, strategy, spec.step_loss, spec.targets)
        preds = task.online_predict(m, res.readout)
        return res.loss, res.loss.detach() * spec.scale, preds
    outputs = unroll(model, x, strategy=strategy)
    loss = task.loss(m, outputs, targets)
    with torch.no_grad():
        preds = task.predict(m, outputs.detach() if isinstance(outputs, Tensor) else outputs)
    return loss, loss.detach(), preds


@dataclass
class EpochResult:
    """Sums over the batches of one epoch (or one shard of it)."""

    loss_sum: float = 0.0          # sum over samples of the per-sample loss
    count: int = 0                 # samples seen
    steps: int = 0                 # optimizer steps (batches)
    seconds: float = 0.0           # wall time of the steps (forward, backward, update)
    peak_bytes: dict[str, int] = field(default_factory=dict)
    recomputed_steps: int = 0      # per unroll (max over batches)
    bytes_moved: int = 0           # per unroll (max over batches)
    metrics: Metrics = field(default_factory=Metrics)   # the task's accumulator
    skipped: int = 0               # batches skipped for a non-finite loss or gradient

    @property
    def loss(self) -> float:
        return self.loss_sum / self.count if self.count else math.nan

    @property
    def acc(self) -> float:
        """Classification accuracy when the task reports ``acc`` (else NaN)."""
        return float(self.metrics.compute().get("acc", math.nan))

    def add_report(self, report) -> None:
        if report is None:
            return
        for tier, n in (report.peak_bytes or {}).items():
            self.peak_bytes[tier] = max(self.peak_bytes.get(tier, 0), int(n))
        self.recomputed_steps = max(self.recomputed_steps, int(report.recomputed_steps or 0))
        self.bytes_moved = max(self.bytes_moved, int(report.bytes_moved or 0))

    def as_row(self, prefix: str = "train") -> dict[str, Any]:
        """Flat metrics: ``{prefix}_loss``, ``{prefix}_<metric>``, ``sec_per_step``,
        ``peak_bytes_<tier>``..."""
        row: dict[str, Any] = {f"{prefix}_loss": self.loss}
        for name, value in self.metrics.compute().items():
            row[f"{prefix}_{name}"] = value
        row.update(steps=self.steps,
                   sec_per_step=self.seconds / self.steps if self.steps else math.nan)
        for tier, n in sorted(self.peak_bytes.items()):
            row[f"peak_bytes_{tier}"] = n
        row["recomputed_steps"] = self.recomputed_steps
        row["bytes_moved"] = self.bytes_moved
        if self.skipped:
            row["skipped_batches"] = self.skipped
        return row

    def state_dict(self) -> dict:
        return {"loss_sum": self.loss_sum, "count": self.count, "steps": self.steps,
                "seconds": self.seconds, "peak_bytes": dict(self.peak_bytes),
                "recomputed_steps": self.recomputed_steps, "bytes_moved": self.bytes_moved,
                "metrics": self.metrics.state_dict(), "skipped": self.skipped}

    @classmethod
    def from_state_dict(cls, d: dict | None, task: Task | None = None) -> "EpochResult":
        d = dict(d or {})
        metrics = task.new_metrics() if task is not None else Metrics()
        if d.get("metrics"):
            metrics.load_state_dict(d.pop("metrics"))
        d.pop("metrics", None)
        for old in ("correct", "acc_count"):   # snapshots written before tasks existed
            d.pop(old, None)
        return cls(metrics=metrics, **d)


class _LineProgress:
    """Progress for a non-terminal (a log file, a Ray worker): one plain line at each quarter
    of the pass, with the running postfix (e.g. the loss)."""

    def __init__(self, iterable: Iterable, desc: str, total: int):
        self.iterable, self.desc, self.total, self.postfix = iterable, desc, total, ""

    def set_postfix(self, refresh: bool = False, **kw) -> None:
        self.postfix = " ".join(f"{k} {v}" for k, v in kw.items())

    def __iter__(self):
        marks = {max(1, (self.total * q) // 4) for q in (1, 2, 3)}
        for i, item in enumerate(self.iterable, 1):
            yield item
            if i in marks and i < self.total:
                print(f"  {self.desc} {i}/{self.total} ({100 * i // self.total}%) {self.postfix}",
                      flush=True)


def progress_bar(iterable: Iterable, enabled: bool, desc: str, total: int | None = None):
    """tqdm over ``iterable`` when ``enabled`` and stderr is a terminal; a plain line per
    quarter when enabled but not a terminal (training passes of 8+ batches); else the iterable."""
    if not enabled:
        return iterable
    if not sys.stderr.isatty():
        if total is not None and total >= 8 and not desc.endswith("test"):
            return _LineProgress(iterable, desc, total)
        return iterable
    from tqdm.auto import tqdm
    return tqdm(iterable, desc=desc, total=total, leave=False, dynamic_ncols=True)


def _len(loader) -> int | None:
    try:
        return len(loader)
    except TypeError:
        return None


def train_epoch(model, loader: Iterable, optimizer, strategy, *, task: Task | str | None = None,
                clip_grad: float | None = None, device: torch.device | None = None,
                result: EpochResult | None = None, skip: int = 0, progress: bool = False,
                desc: str = "train", on_step: Callable[[EpochResult], None] | None = None,
                backward: Callable[[Tensor], None] | None = None,
                optimizer_step: Callable[[], None] | None = None,
                train_step: Callable[[Any, Any], tuple[Tensor, Any]] | None = None,
                guard: Callable[[Tensor, EpochResult], bool] | None = None) -> EpochResult:
    """Train ``model`` for one pass over ``loader`` (batches split by ``task``).

    Args:
        model: a RecurrentModel, possibly wrapped (DDP); it is put in train mode.
        optimizer: a torch optimizer (ignored when ``optimizer_step`` is given).
        strategy: a Strategy instance (resolved once by the caller) or a name.
        task: the Task (default ``classification``).
        clip_grad: max global gradient norm, or None.
        result: partial sums to continue (resuming mid-epoch); ``skip``: batches to skip first.
        on_step: called with the running result after each optimizer step.
        backward / optimizer_step: replace ``loss.backward()`` and clip + ``optimizer.step()`` +
            ``zero_grad`` (e.g. a DeepSpeed engine's ``backward`` and ``step``).
        train_step: a backend's compiled step ``(inputs, targets) -> (loss, preds)`` that runs
            forward, backward and the optimizer itself (IPU); replaces all of the above.
        guard: ``guard(loss, result) -> bool`` called after backward, before the optimizer
            step; False skips the update (the non-finite guard; it may also raise).
    Returns the epoch's :class:`EpochResult` (sums; divide after an all-reduce if sharded).
    """
    task = get_task(task or "classification")
    strategy = st_strategies.get(strategy)
    res = result if result is not None else EpochResult(metrics=task.new_metrics())
    model.train()
    it = iter(loader)
    for _ in range(skip):
        next(it)
    total = _len(loader)
    bar = progress_bar(it, progress, desc, None if total is None else total - skip)
    for batch in bar:
        x, targets = task.split(batch)
        x, targets = to_device(x, device), task.to(targets, device)
        t0 = time.perf_counter()
        if train_step is not None:
            value, preds = train_step(x, targets)
            value = value.detach()
        else:
            loss, value, preds = batch_loss(model, x, targets, strategy, task)
            if backward is not None:
                backward(loss)
            else:
                loss.backward()
            if guard is not None and not guard(value, res):
                if optimizer is not None:
                    optimizer.zero_grad(set_to_none=True)
                res.skipped += 1
                continue
            if optimizer_step is not None:
                optimizer_step()
            else:
                if clip_grad:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
                try:
                    optimizer.step()
                except RuntimeError as e:   # e.g. Adam: "cannot be converted ... overflow"
                    if "overflow" not in str(e):
                        raise
                    from .guard import NonFiniteError
                    raise NonFiniteError(f"the optimizer update overflowed at batch "
                                         f"{res.steps + 1} of this epoch ({str(e).strip()}); "
                                         f"try a lower trainer.lr") from None
                optimizer.zero_grad(set_to_none=True)
        res.seconds += time.perf_counter() - t0
        n = task.batch_size(x, targets)
        res.loss_sum += float(value) * n
        res.count += n
        if preds is not None:
            res.metrics.update(preds, targets)
        res.steps += 1
        res.add_report(strategy.report)
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{res.loss:.4f}", refresh=False)
        if on_step is not None:
            on_step(res)
    return res


@torch.no_grad()
def evaluate(model, loader: Iterable, *, task: Task | str | None = None,
             device: torch.device | None = None, progress: bool = False,
             desc: str = "test") -> EpochResult:
    """Loss and the task's metrics of ``model`` on ``loader``: a plain forward under
    ``no_grad`` (outputs ``[T, B, ...]``)."""
    task = get_task(task or "classification")
    m = unwrap(model)
    was_training = m.training
    m.eval()
    res = EpochResult(metrics=task.new_metrics())
    for batch in progress_bar(loader, progress, desc, _len(loader)):
        x, targets = task.split(batch)
        x, targets = dense(to_device(x, device)), task.to(targets, device)
        outputs = m(x)
        n = task.batch_size(x, targets)
        res.loss_sum += float(task.loss(m, outputs, targets)) * n
        res.metrics.update(task.predict(m, outputs), targets)
        res.count += n
        res.steps += 1
    m.train(was_training)
    return res
