"""The ``Task`` interface: what is learned from a model's outputs.

A task owns everything the training loop must not know about a problem:

* the batch layout: :meth:`Task.split` turns one loader item into ``(inputs, targets)``
  (inputs time-major ``[T, B, ...]`` Tensor or ``SparseSpikes``; targets anything the task
  understands: labels ``[B]``, a list of per-sample box tensors, next tokens ``[T, B]``);
  :meth:`Task.collate` builds a batch from samples when a loader asks the task to;
* the loss from outputs and targets (:meth:`Task.loss`, a scalar mean over the batch);
* the online per-step loss for e-prop (:meth:`Task.online`), when the task has one;
* the metrics (:meth:`Task.new_metrics` -> :class:`Metrics`, names such as ``acc``,
  ``map``, ``ppl``), which the loop writes as ``train_<name>`` / ``test_<name>``.

The Trainer loop names no loss function: it calls ``task.split``, runs the model under the
memory strategy, ``task.loss`` (or ``task.online``), ``loss.backward()`` and feeds the
metrics. A user task is a subclass named by class path in a config
(``task: {class: mypkg.tasks:MyTask, option: 1}``) or registered with
:func:`spiketrain.trainer.tasks.register_task`.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import Tensor


class Metrics:
    """Accumulates a task's metrics over batches (and over ranks with :meth:`merge`).

    Subclasses keep plain sums or lists in :meth:`state_dict` so that a data-parallel
    group can gather the states of all ranks and merge them before :meth:`compute`.
    """

    def update(self, preds: Any, targets: Any) -> None:
        """Add one batch: ``preds`` from :meth:`Task.predict` (or e-prop's readout)."""

    def compute(self) -> dict[str, float]:
        """``{name: value}`` for the batches added so far (e.g. ``{"acc": 0.93}``)."""
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def merge(self, state: dict) -> None:
        """Add another accumulator's :meth:`state_dict` (another rank's share)."""


class OnlineLoss:
    """What a task gives an online strategy (e-prop): ``step_loss(y_t, target_t) -> scalar``
    summed over time, and the time-major ``targets`` ``[T, B, ...]`` it is called with.
    ``scale`` turns the summed loss into the reported per-sample loss (e.g. ``1 / T``)."""

    def __init__(self, step_loss: Callable[[Tensor, Any], Tensor], targets: Any,
                 scale: float = 1.0):
        self.step_loss, self.targets, self.scale = step_loss, targets, float(scale)


class Task:
    """Base class of every task. Override :meth:`loss`, and usually :meth:`predict`,
    :meth:`new_metrics` and :meth:`online`."""

    name = "task"
    #: metric names :meth:`new_metrics` reports (the loop writes ``train_<n>``/``test_<n>``)
    metric_names: tuple[str, ...] = ()
    #: the metric to show first in progress lines and sweeps (higher is better unless
    #: it is listed in ``lower_is_better``)
    main_metric: str | None = None
    lower_is_better: tuple[str, ...] = ()

    # ------------------------------------------------------------ batch layout
    def split(self, batch: Any) -> tuple[Any, Any]:
        """One loader item -> ``(inputs [T, B, ...], targets)``. Default: a 2-tuple."""
        try:
            inputs, targets = batch
        except (TypeError, ValueError):
            raise ValueError(f"task {self.name!r} expects batches of (inputs, targets); got "
                             f"{type(batch).__name__}. Give the task a split() for this "
                             f"data") from None
        return inputs, targets

    def collate(self, samples: list) -> Any:  # pragma: no cover - optional
        """Build one batch from ``[(sample, target), ...]`` (loaders that ask the task)."""
        raise NotImplementedError(f"task {self.name!r} does not collate samples")

    def batch_size(self, inputs: Any, targets: Any) -> int:
        """Samples in the batch (weights the per-sample loss average). Default ``inputs.shape[1]``."""
        return int(inputs.shape[1])

    def to(self, targets: Any, device: torch.device | None) -> Any:
        """Move targets to ``device`` (tensors, lists/tuples/dicts of tensors)."""
        if device is None:
            return targets
        if isinstance(targets, Tensor) or hasattr(targets, "to") and not isinstance(targets, (list, tuple, dict)):
            return targets.to(device)
        if isinstance(targets, (list, tuple)):
            return type(targets)(self.to(t, device) for t in targets)
        if isinstance(targets, dict):
            return {k: self.to(v, device) for k, v in targets.items()}
        return targets

    def check(self, model, data: Any) -> None:
        """Optional: refuse a model/data pair that cannot work (e.g. ``n_out`` vs classes)
        with one clear line, before training starts."""

    # ------------------------------------------------------------ loss and metrics
    def loss(self, model, outputs: Tensor, targets: Any) -> Tensor:  # pragma: no cover
        """Scalar loss (mean over the batch) from ``outputs [T, B, ...]``; ``model`` is the
        unwrapped RecurrentModel (for heads such as ``model.logits``)."""
        raise NotImplementedError

    def predict(self, model, outputs: Tensor) -> Any:
        """What the metrics consume, from ``outputs [T, B, ...]`` (default: the outputs)."""
        return outputs

    def new_metrics(self) -> Metrics:
        """A fresh accumulator (default: no metrics beyond the loss)."""
        return Metrics()

    def online(self, model, inputs: Any, targets: Any) -> OnlineLoss | None:
        """The per-step loss for online strategies (e-prop), or None when this task has none
        (online strategies then refuse with a clear error)."""
        return None

    def online_predict(self, model, readout: Tensor | None) -> Any:
        """Predictions from an online strategy's running readout (``result.readout``,
        ``[B, C]`` reduced over time by the model); None: no metrics for that batch."""
        return readout

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class MeanMetric(Metrics):
    """Helper: named running sums ``{name: (sum, count)}``; ``compute`` gives sum / count."""

    def __init__(self, *names: str):
        self.sums = {n: [0.0, 0] for n in names}

    def add(self, name: str, total: float, count: int) -> None:
        s = self.sums.setdefault(name, [0.0, 0])
        s[0] += float(total)
        s[1] += int(count)

    def compute(self) -> dict[str, float]:
        return {n: (s / c if c else math.nan) for n, (s, c) in self.sums.items()}

    def state_dict(self) -> dict:
        return {n: list(v) for n, v in self.sums.items()}

    def load_state_dict(self, state: dict) -> None:
        self.sums = {n: [float(v[0]), int(v[1])] for n, v in state.items()}

    def merge(self, state: dict) -> None:
        for n, (s, c) in state.items():
            self.add(n, s, c)
