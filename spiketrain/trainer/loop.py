"""The training loop in pieces a distributed worker can reuse: one batch, one epoch, evaluation.

Every function takes the model as given (possibly wrapped, e.g. DistributedDataParallel) and
any iterable of ``(x [T, B, n_in], labels [B])`` batches (possibly a per-rank shard).
Results are sums (loss, correct, count) so workers can all-reduce them before dividing.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import strategies as st_strategies
from ..models.base import unwrap
from ..strategies import unroll


def to_device(x: Any, device: torch.device | None) -> Any:
    """Move a dense tensor or a sparse spike train (anything with ``.to``) to ``device``."""
    if device is None:
        return x
    return x.to(device)


def dense(x: Any) -> Tensor:
    """A dense ``[T, B, N]`` tensor from a dense tensor or a sparse spike train."""
    return x if isinstance(x, Tensor) else x.dense()


def logits_of(model, outputs: Tensor) -> Tensor:
    """``outputs [T, B, C] -> logits [B, C]``: the model's ``logits`` or the mean over time."""
    m = unwrap(model)
    if hasattr(m, "logits"):
        return m.logits(outputs)
    return outputs.mean(0)


def step_ce(y_t: Tensor, target_t: Tensor) -> Tensor:
    """Per-step loss of online strategies: cross-entropy of ``y_t [B, C]`` vs ``target_t [B]``."""
    return F.cross_entropy(y_t, target_t)


def batch_loss(model, x, labels: Tensor, strategy) -> tuple[Tensor, Tensor, Tensor | None]:
    """Forward one batch under ``strategy``.

    Returns ``(loss_to_backward, loss_value, logits or None)``. Offline strategies: cross-entropy
    of ``logits(outputs)``. Online strategies (``strategy.online``): the summed per-step
    cross-entropy of every ``y_t`` vs the label; ``loss_value`` is that sum divided by T.
    """
    if getattr(strategy, "online", False):
        T = x.shape[0]
        targets = labels.unsqueeze(0).expand(T, *labels.shape)
        total = unroll(model, x, strategy=strategy, step_loss=step_ce, targets=targets)
        logits = getattr(strategy, "logits", None)  # running readout, if the strategy keeps it
        if logits is not None and tuple(logits.shape) != (labels.shape[0], logits.shape[-1]):
            logits = None
        return total, total.detach() / T, None if logits is None else logits.detach()
    outputs = unroll(model, x, strategy=strategy)
    logits = logits_of(model, outputs)
    loss = F.cross_entropy(logits, labels)
    return loss, loss.detach(), logits


@dataclass
class EpochResult:
    """Sums over the batches of one epoch (or one shard of it)."""

    loss_sum: float = 0.0          # sum over samples of the per-sample loss
    correct: int = 0
    count: int = 0                 # samples seen
    acc_count: int = 0             # samples with a prediction (0 for online strategies)
    steps: int = 0                 # optimizer steps (batches)
    seconds: float = 0.0           # wall time of the steps (forward, backward, update)
    peak_bytes: dict[str, int] = field(default_factory=dict)
    recomputed_steps: int = 0      # per unroll (max over batches)
    bytes_moved: int = 0           # per unroll (max over batches)

    @property
    def loss(self) -> float:
        return self.loss_sum / self.count if self.count else math.nan

    @property
    def acc(self) -> float:
        return self.correct / self.acc_count if self.acc_count else math.nan

    def add_report(self, report) -> None:
        if report is None:
            return
        for tier, n in (report.peak_bytes or {}).items():
            self.peak_bytes[tier] = max(self.peak_bytes.get(tier, 0), int(n))
        self.recomputed_steps = max(self.recomputed_steps, int(report.recomputed_steps or 0))
        self.bytes_moved = max(self.bytes_moved, int(report.bytes_moved or 0))

    def as_row(self, prefix: str = "train") -> dict[str, Any]:
        """Flat metrics: ``{prefix}_loss``, ``{prefix}_acc``, ``sec_per_step``, ``peak_bytes_<tier>``..."""
        row = {f"{prefix}_loss": self.loss, f"{prefix}_acc": self.acc, "steps": self.steps,
               "sec_per_step": self.seconds / self.steps if self.steps else math.nan}
        for tier, n in sorted(self.peak_bytes.items()):
            row[f"peak_bytes_{tier}"] = n
        row["recomputed_steps"] = self.recomputed_steps
        row["bytes_moved"] = self.bytes_moved
        return row

    def state_dict(self) -> dict:
        return {"loss_sum": self.loss_sum, "correct": self.correct, "count": self.count,
                "acc_count": self.acc_count, "steps": self.steps, "seconds": self.seconds,
                "peak_bytes": dict(self.peak_bytes), "recomputed_steps": self.recomputed_steps,
                "bytes_moved": self.bytes_moved}

    @classmethod
    def from_state_dict(cls, d: dict | None) -> "EpochResult":
        return cls(**d) if d else cls()


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


def train_epoch(model, loader: Iterable, optimizer, strategy, *, clip_grad: float | None = None,
                device: torch.device | None = None, result: EpochResult | None = None,
                skip: int = 0, progress: bool = False, desc: str = "train",
                on_step: Callable[[EpochResult], None] | None = None,
                backward: Callable[[Tensor], None] | None = None,
                optimizer_step: Callable[[], None] | None = None) -> EpochResult:
    """Train ``model`` for one pass over ``loader`` (batches ``(x [T,B,n_in], labels [B])``).

    Args:
        model: a RecurrentModel, possibly wrapped (DDP); it is put in train mode.
        optimizer: a torch optimizer (ignored when ``optimizer_step`` is given).
        strategy: a Strategy instance or name (``spiketrain.strategies.get``).
        clip_grad: max global gradient norm, or None.
        result: partial sums to continue (resuming mid-epoch); ``skip``: batches to skip first.
        on_step: called with the running result after each optimizer step.
        backward / optimizer_step: replace ``loss.backward()`` and clip + ``optimizer.step()`` +
            ``zero_grad`` (e.g. a DeepSpeed engine's ``backward`` and ``step``).
    Returns the epoch's :class:`EpochResult` (sums; divide after an all-reduce if sharded).
    """
    strategy = st_strategies.get(strategy)
    res = result if result is not None else EpochResult()
    model.train()
    it = iter(loader)
    for _ in range(skip):
        next(it)
    total = _len(loader)
    bar = progress_bar(it, progress, desc, None if total is None else total - skip)
    for x, labels in bar:
        x, labels = to_device(x, device), to_device(labels, device)
        t0 = time.perf_counter()
        loss, value, logits = batch_loss(model, x, labels, strategy)
        if backward is not None:
            backward(loss)
        else:
            loss.backward()
        if optimizer_step is not None:
            optimizer_step()
        else:
            if clip_grad:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        res.seconds += time.perf_counter() - t0
        n = int(labels.shape[0])
        res.loss_sum += float(value) * n
        res.count += n
        if logits is not None:
            res.correct += int((logits.detach().argmax(-1) == labels).sum())
            res.acc_count += n
        res.steps += 1
        res.add_report(strategy.report)
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{res.loss:.4f}", refresh=False)
        if on_step is not None:
            on_step(res)
    return res


@torch.no_grad()
def evaluate(model, loader: Iterable, *, device: torch.device | None = None,
             progress: bool = False, desc: str = "test") -> EpochResult:
    """Loss and accuracy of ``model`` on ``loader`` with a plain forward under ``no_grad``."""
    m = unwrap(model)
    was_training = m.training
    m.eval()
    res = EpochResult()
    for x, labels in progress_bar(loader, progress, desc, _len(loader)):
        x, labels = dense(to_device(x, device)), to_device(labels, device)
        logits = logits_of(m, m(x))
        n = int(labels.shape[0])
        res.loss_sum += float(F.cross_entropy(logits, labels)) * n
        res.correct += int((logits.argmax(-1) == labels).sum())
        res.count += n
        res.acc_count += n
        res.steps += 1
    m.train(was_training)
    return res
