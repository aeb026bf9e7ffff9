"""``language_model``: next-token prediction, per-token cross-entropy, perplexity.

Batches ``(x [T, B], y [T, B])`` int64 (``y[t]`` is the token after ``x[t]``, as
:mod:`spiketrain.data.text` yields them). The model's ``outputs [T, B, V]`` are the logits
of the next token (a model whose outputs are something else gives ``token_logits(outputs)
-> [T, B, V]``). The loss is the mean cross-entropy over all ``T * B`` tokens, in nats.

Metrics are sums over tokens (negative log-likelihood and token count), so shards and ranks
merge exactly before dividing:

* ``ppl`` = exp(mean token loss), the perplexity;
* ``bpc`` = mean token loss / ln 2, bits per character (per byte for byte-level data).

e-prop gets the per-step cross-entropy of ``y_t [B, V]`` against ``y[t] [B]``, summed over
time and scaled by ``1 / T`` to the same mean token loss.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import MeanMetric, OnlineLoss, Task
from .registry import register_task


def token_logits(model, outputs: Tensor) -> Tensor:
    """``outputs [T, B, V]`` -> next-token logits ``[T, B, V]`` (the model's
    ``token_logits`` when it has one, else the outputs themselves)."""
    fn = getattr(model, "token_logits", None)
    return fn(outputs) if callable(fn) else outputs


def step_ce(y_t: Tensor, target_t: Tensor) -> Tensor:
    """Online per-step loss: mean cross-entropy of ``y_t [B, V]`` vs ``target_t [B]``."""
    return F.cross_entropy(y_t, target_t)


def token_nll(logits: Tensor, targets: Tensor, reduction: str = "mean") -> Tensor:
    """Cross-entropy of ``logits [T, B, V]`` vs ``targets [T, B]`` over all tokens (nats)."""
    if logits.dtype not in (torch.float32, torch.float64):
        logits = logits.float()          # half-precision logits: the loss in float32
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                           reduction=reduction)


class Perplexity(MeanMetric):
    """Token-level sums: ``nll`` (nats) and token count; reports ``ppl`` and ``bpc``."""

    def __init__(self):
        super().__init__("nll")

    def update(self, preds, targets) -> None:
        if preds is None:
            return
        self.add("nll", float(token_nll(preds.detach(), targets, "sum")), int(targets.numel()))

    def compute(self) -> dict[str, float]:
        total, count = self.sums["nll"]
        if not count:
            return {"ppl": math.nan, "bpc": math.nan}
        mean = total / count
        return {"ppl": math.exp(min(mean, 700.0)), "bpc": mean / math.log(2)}


@register_task("language_model")
class LanguageModel(Task):
    """Next-token prediction: mean per-token cross-entropy; ``ppl`` and ``bpc``."""

    metric_names = ("ppl", "bpc")
    main_metric = "ppl"
    lower_is_better = ("ppl", "bpc")

    def split(self, batch):
        x, y = super().split(batch)
        if not (isinstance(x, Tensor) and isinstance(y, Tensor)):
            raise ValueError("language_model needs tensor batches (x [T, B] tokens, y [T, B] "
                             "next tokens); use data.kind: text")
        if y.dim() != 2 or tuple(x.shape[:2]) != tuple(y.shape):
            raise ValueError(f"language_model needs next-token targets y [T, B] shaped like the "
                             f"tokens x [T, B]; got x {tuple(x.shape)}, y {tuple(y.shape)}")
        if y.dtype != torch.int64:
            raise ValueError(f"language_model targets must be int64 token ids, got {y.dtype}")
        return x, y

    def loss(self, model, outputs: Tensor, targets: Tensor) -> Tensor:
        logits = token_logits(model, outputs)
        self._check_shape(logits, targets)
        return token_nll(logits, targets)

    def predict(self, model, outputs: Tensor) -> Tensor:
        return token_logits(model, outputs).detach()

    def new_metrics(self) -> Perplexity:
        return Perplexity()

    def online(self, model, inputs, targets: Tensor) -> OnlineLoss:
        return OnlineLoss(step_ce, targets, scale=1.0 / int(targets.shape[0]))

    def online_predict(self, model, readout):
        return None   # a readout reduced over time predicts no sequence of tokens

    def check(self, model, data) -> None:
        vocab = getattr(data, "vocab_size", None)
        for attr in ("vocab_size", "n_out"):
            n = getattr(model, attr, None)
            if n is not None and vocab is not None and int(n) < int(vocab):
                raise ValueError(f"model.{attr}={n} but the data has {vocab} token ids; set "
                                 f"model.{attr}: {vocab}")

    @staticmethod
    def _check_shape(logits: Tensor, targets: Tensor) -> None:
        if logits.dim() != 3 or tuple(logits.shape[:2]) != tuple(targets.shape):
            raise ValueError(f"language_model needs logits [T, B, V] for targets [T, B] "
                             f"{tuple(targets.shape)}; the model gave {tuple(logits.shape)}")
