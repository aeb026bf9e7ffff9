"""``classification``: one label per sequence, cross-entropy of the model's logits, accuracy.

Batches ``(x [T, B, n_in], labels [B])`` (int64). Logits ``[B, C]`` come from the model's
``logits(outputs)`` (the RSNN reduces its readout over time: max / sum / mean / last), or the
mean over time of ``outputs [T, B, C]`` for models without one. e-prop gets the per-step
cross-entropy of every ``y_t`` against the sequence's label.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import MeanMetric, OnlineLoss, Task
from .registry import register_task


def logits_of(model, outputs: Tensor) -> Tensor:
    """``outputs [T, B, C] -> logits [B, C]``: the model's ``logits`` or the mean over time."""
    if hasattr(model, "logits"):
        return model.logits(outputs)
    return outputs.mean(0)


def step_ce(y_t: Tensor, target_t: Tensor) -> Tensor:
    """Per-step loss of online strategies: cross-entropy of ``y_t [B, C]`` vs ``target_t [B]``."""
    return F.cross_entropy(y_t, target_t)


class Accuracy(MeanMetric):
    """Fraction of samples whose arg-max logit is the label."""

    def __init__(self):
        super().__init__("acc")

    def update(self, preds, targets) -> None:
        if preds is None:
            return
        self.add("acc", int((preds.detach().argmax(-1) == targets).sum()), int(targets.shape[0]))


@register_task("classification")
class Classification(Task):
    """Sequence classification (SHD-style): cross-entropy and accuracy."""

    metric_names = ("acc",)
    main_metric = "acc"

    def split(self, batch):
        x, labels = super().split(batch)
        if isinstance(labels, Tensor) and labels.dim() != 1:
            raise ValueError(f"classification needs one integer label per sample (labels [B]); "
                             f"got labels of shape {tuple(labels.shape)}")
        return x, labels

    def loss(self, model, outputs: Tensor, targets: Tensor) -> Tensor:
        return F.cross_entropy(logits_of(model, outputs), targets)

    def predict(self, model, outputs: Tensor) -> Tensor:
        return logits_of(model, outputs)

    def new_metrics(self) -> Accuracy:
        return Accuracy()

    def online(self, model, inputs, targets: Tensor) -> OnlineLoss:
        T = int(inputs.shape[0])
        return OnlineLoss(step_ce, targets.unsqueeze(0).expand(T, *targets.shape), scale=1.0 / T)

    def online_predict(self, model, readout):
        return readout

    def check(self, model, data) -> None:
        n_in, data_in = getattr(model, "n_in", None), getattr(data, "n_in", None)
        if isinstance(n_in, int) and isinstance(data_in, int) and n_in != data_in:
            raise ValueError(f"model.n_in={n_in} but the data has {data_in} input channels; set "
                             f"model.n_in: {data_in} (or leave it out: it follows the data)")
        n_out = getattr(model, "n_out", None)
        n_classes = getattr(data, "n_classes", None)
        if n_out is not None and n_classes is not None and int(n_out) < int(n_classes):
            raise ValueError(f"model.n_out={n_out} but the data has {n_classes} classes; set "
                             f"model.n_out: {n_classes} (or leave it out: it follows the data)")
