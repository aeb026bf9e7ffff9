"""The non-finite guard: a NaN or inf loss or gradient norm never reaches the weights.

:class:`NonFiniteGuard` is called by :func:`~spiketrain.trainer.loop.train_epoch` after the
backward pass and before the optimizer step. With ``on_nonfinite="stop"`` (the default) it
raises :class:`NonFiniteError`: one line naming the step and what to try; no update is made and
no snapshot is written, so the last good snapshot stays intact. With ``"skip_batch"`` it drops
that batch's update and goes on, and still stops after ``max_skips`` non-finite batches in a row
(the weights themselves are then beyond repair).
"""
from __future__ import annotations

import math
from typing import Callable, Iterable

import torch
from torch import Tensor

MODES = ("stop", "skip_batch")


class NonFiniteError(RuntimeError):
    """Training stopped on a NaN/inf loss, gradient norm or weight; the message is one line."""


def grad_norm(params: Iterable[torch.nn.Parameter]) -> float:
    """Global L2 norm of the gradients of ``params`` (those that have one)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    return float(torch.nn.utils.get_total_norm(grads, norm_type=2.0))


def nonfinite_weights(model: torch.nn.Module) -> list[str]:
    """Names of the parameters of ``model`` holding a NaN or inf."""
    return [n for n, p in model.named_parameters() if not bool(torch.isfinite(p).all())]


def advice(lr: float | None, clip_grad: float | None) -> str:
    """What to try after a non-finite step (lower lr, clip the gradient norm)."""
    parts = []
    if lr is not None:
        parts.append(f"a lower trainer.lr (now {lr:g}, e.g. --set trainer.lr={lr / 10:g})")
    if not clip_grad:
        parts.append("trainer.clip_grad: 1.0")
    else:
        parts.append(f"a smaller trainer.clip_grad (now {clip_grad:g})")
    return "try " + " or ".join(parts)


class NonFiniteGuard:
    """``guard(loss_value, result) -> bool``: True when the step may update the weights.

    Args:
        model: the (possibly wrapped) model whose gradients are checked, or a callable
            returning it (a model that is wrapped later, e.g. in DDP).
        mode: ``"stop"`` (raise :class:`NonFiniteError`) or ``"skip_batch"``.
        step: ``step() -> int``, optimizer steps done so far (the failing step is the next).
        lr, clip_grad: ``lr() -> float`` and the clip norm, named in the advice.
        max_skips: ``skip_batch`` stops after this many non-finite batches in a row.
    """

    def __init__(self, model, mode: str = "stop",
                 step: Callable[[], int] = lambda: 0, lr: Callable[[], float] | None = None,
                 clip_grad: float | None = None, max_skips: int = 10):
        if mode not in MODES:
            raise ValueError(f"trainer.on_nonfinite must be one of {', '.join(MODES)}, got {mode!r}")
        self.model, self.mode, self.step, self.lr = model, mode, step, lr
        self.clip_grad, self.max_skips = clip_grad, int(max_skips)
        self.in_a_row = 0
        self.skipped = 0

    def __call__(self, loss_value: Tensor | float, result=None) -> bool:
        loss = float(loss_value)
        what = None
        if not math.isfinite(loss):
            what = f"loss ({loss})"
        else:
            model = self.model if isinstance(self.model, torch.nn.Module) else self.model()
            norm = grad_norm(model.parameters())
            if not math.isfinite(norm):
                what = f"gradient norm ({norm}; loss {loss:.4g})"
        if what is None:
            self.in_a_row = 0
            return True
        step = self.step() + 1
        lr = self.lr() if self.lr is not None else None
        tip = advice(lr, self.clip_grad)
        if self.mode == "stop":
            raise NonFiniteError(f"non-finite {what} at step {step}: stopped before the update, "
                                 f"the last snapshot is intact; {tip}, or trainer.on_nonfinite: "
                                 f"skip_batch")
        self.in_a_row += 1
        self.skipped += 1
        if self.in_a_row >= self.max_skips:
            raise NonFiniteError(f"non-finite {what} in {self.in_a_row} batches in a row up to step "
                                 f"{step} (on_nonfinite: skip_batch): stopped, the last snapshot is "
                                 f"intact; {tip}")
        return False
