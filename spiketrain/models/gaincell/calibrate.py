"""Adaptation without retraining: match the scaler statistics of a reference model.

The algorithm of Leroux et al. (2025, "Analog In-Memory Computing Attention Mechanism for
Fast and Energy-Efficient Large Language Models", Methods: "adaptation algorithm"):

1. Run the reference model (``softmax`` or ``linear_gaincell`` attention) with statistics on:
   every affine scaler ``(a, b)`` (on Q, K, V and the attention output, one pair per head)
   keeps the per-head running mean ``mu*`` and standard deviation ``sigma*`` of its output
   (exponential moving average, momentum 0.1) -> :func:`reference_stats`.
2. Switch to the nonlinear ``gaincell`` attention. On one fixed batch, without gradients,
   repeat: measure each scaler's per-head ``mu``, ``sigma`` on that batch; for every layer,
   scaler and head,

   * if ``|sigma - sigma*| > eps``: ``a <- alpha * a * sigma* / sigma + (1 - alpha) * a``
   * if ``|mu - mu*| > eps``:       ``b <- alpha * (b + mu* - mu) + (1 - alpha) * b``

   with ``alpha`` falling linearly from 1.0 to 0.1 over the first 50 iterations and staying
   at 0.1 after; stop when every error is below ``eps = 1e-4`` or after 100 iterations
   -> :func:`calibrate`. Under ``torch.distributed`` every rank calibrates on its own batch
   and the rank with the lowest loss broadcasts its scalers to all.
3. Optionally fine-tune (an ordinary training run from the calibrated weights).

The model provides (``spiketrain.models.gaincell``): ``model.set_attention(kind)``,
``model.scaler_stats(enabled)`` (enabling starts a fresh record: the first batch sets the
running values, later batches blend in with momentum 0.1) and ``model.scalers()``, objects
with ``.layer``, ``.name`` (``q``, ``k``, ``v``, ``out``), ``.a``, ``.b``
(``nn.Parameter [n_head]``) and ``.mean``, ``.std`` (``[n_head]``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch
from torch import Tensor

Key = tuple[int, str]
Stats = dict[Key, tuple[Tensor, Tensor]]


def alpha_at(i: int, alpha_max: float = 1.0, alpha_min: float = 0.1,
             decay_iters: int = 50) -> float:
    """Step size of iteration ``i`` (from 0): linear from ``alpha_max`` (``i = 0``) to
    ``alpha_min`` (``i = decay_iters - 1``), then ``alpha_min``."""
    if i >= decay_iters - 1:
        return float(alpha_min)
    return float(alpha_max + (alpha_min - alpha_max) * i / (decay_iters - 1))


def _scalers(model) -> list:
    found = list(model.scalers())
    if not found:
        raise ValueError("calibration needs a model with affine scalers (model.scalers() is "
                         "empty); use a gaincell_gpt model")
    return found


def _key(s) -> Key:
    return int(s.layer), str(s.name)


def current_stats(model) -> Stats:
    """``{(layer, name): (mean [n_head], std [n_head])}`` as the scalers hold them now."""
    return {_key(s): (s.mean.detach().clone(), s.std.detach().clone()) for s in _scalers(model)}


@torch.no_grad()
def measure(model, batch: Tensor, run: Callable[[Any, Tensor], Any] | None = None) -> Stats:
    """Per-head statistics of every scaler's output on ``batch`` (``[T, B, ...]``) alone."""
    model.scaler_stats(True)
    try:
        (run or (lambda m, x: m(x)))(model, batch)
    finally:
        model.scaler_stats(False)
    return current_stats(model)


@torch.no_grad()
def reference_stats(model, batches: Iterable[Tensor], kind: str | None = None,
                    run: Callable[[Any, Tensor], Any] | None = None) -> Stats:
    """Step 1: the targets ``(mu*, sigma*)`` of every scaler, recorded (EMA 0.1 in the model)
    while the reference model runs over ``batches`` (inputs ``[T, B, ...]``).

    ``kind`` switches the attention first (``softmax`` or ``linear_gaincell``); None keeps it.
    """
    if kind is not None:
        model.set_attention(kind)
    was_training = model.training
    model.eval()
    run = run or (lambda m, x: m(x))
    n = 0
    model.scaler_stats(True)
    try:
        for x in batches:
            run(model, x)
            n += 1
    finally:
        model.scaler_stats(False)
        model.train(was_training)
    if n == 0:
        raise ValueError("reference_stats needs at least one batch")
    return current_stats(model)


@dataclass
class CalibrationResult:
    """What :func:`calibrate` did: ``iterations`` of updates, whether every error fell below
    the threshold, the largest errors after the last update, per-iteration history
    (``alpha``, ``std_error``, ``mean_error``, ``updated``), and the rank whose scalers were
    kept (0 without distributed training) with every rank's loss."""

    iterations: int
    converged: bool
    std_error: float
    mean_error: float
    history: list[dict] = field(default_factory=list)
    rank: int = 0
    losses: list[float] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"iterations": self.iterations, "converged": self.converged,
                "std_error": self.std_error, "mean_error": self.mean_error, "rank": self.rank,
                "losses": list(self.losses), "history": list(self.history)}


def _errors(stats: Stats, targets: Stats) -> tuple[dict[Key, Tensor], dict[Key, Tensor]]:
    std_err, mean_err = {}, {}
    for k, (mu, sd) in stats.items():
        if k not in targets:
            raise ValueError(f"no reference statistics for layer {k[0]} scaler {k[1]!r}; "
                             f"record them from the same architecture")
        mu_t, sd_t = targets[k]
        std_err[k] = (sd - sd_t.to(sd)).abs()
        mean_err[k] = (mu - mu_t.to(mu)).abs()
    return std_err, mean_err


def _largest(errs: dict[Key, Tensor]) -> float:
    return max((float(e.max()) for e in errs.values()), default=0.0)


@torch.no_grad()
def update_scalers(model, stats: Stats, targets: Stats, alpha: float,
                   threshold: float = 1e-4) -> int:
    """One update of every scaler's ``a`` and ``b`` (per head, only where the error exceeds
    ``threshold``; ``a`` is left alone where ``sigma`` is 0). Returns how many were changed."""
    changed = 0
    for s in _scalers(model):
        k = _key(s)
        mu, sd = stats[k]
        mu_t, sd_t = (t.to(mu) for t in targets[k])
        a, b = s.a.data, s.b.data
        fix_a = ((sd - sd_t).abs() > threshold) & (sd != 0)
        fix_b = (mu - mu_t).abs() > threshold
        new_a = alpha * a * sd_t / torch.where(sd != 0, sd, torch.ones_like(sd)) + (1 - alpha) * a
        new_b = alpha * (b + mu_t - mu) + (1 - alpha) * b
        a.copy_(torch.where(fix_a, new_a.to(a.dtype), a))
        b.copy_(torch.where(fix_b, new_b.to(b.dtype), b))
        changed += int(fix_a.sum()) + int(fix_b.sum())
    return changed


@torch.no_grad()
def calibrate(model, batch: Tensor, targets: Stats, *, kind: str | None = "gaincell",
              threshold: float = 1e-4, max_iters: int = 100, alpha_max: float = 1.0,
              alpha_min: float = 0.1, decay_iters: int = 50,
              run: Callable[[Any, Tensor], Any] | None = None,
              loss_fn: Callable[[Any], float] | None = None,
              log: Callable[[str], None] | None = None) -> CalibrationResult:
    """Step 2: adjust every scaler's ``(a, b)`` until its statistics on ``batch`` match
    ``targets`` (from :func:`reference_stats`).

    Args:
        model: the model to adapt (its weights otherwise untouched); switched to ``kind``
            first (None keeps its attention).
        batch: the fixed calibration inputs ``[T, B, ...]``.
        threshold, max_iters, alpha_max, alpha_min, decay_iters: the paper's 1e-4, 100,
            1.0, 0.1, 50.
        run: ``run(model, x)`` runs the forward (default ``model(x)``).
        loss_fn: ``loss_fn(model) -> float`` after calibration; under ``torch.distributed``
            the rank with the lowest value broadcasts its scalers (default: the mean
            statistics error on the rank's batch).
        log: called with one line per iteration.
    """
    if kind is not None:
        model.set_attention(kind)
    was_training = model.training
    model.eval()
    history: list[dict] = []
    converged, it = False, 0
    try:
        stats = measure(model, batch, run)
        for it in range(max_iters + 1):
            std_err, mean_err = _errors(stats, targets)
            se, me = _largest(std_err), _largest(mean_err)
            if se <= threshold and me <= threshold:
                converged = True
                break
            if it == max_iters:
                break
            alpha = alpha_at(it, alpha_max, alpha_min, decay_iters)
            n = update_scalers(model, stats, targets, alpha, threshold)
            history.append({"iteration": it, "alpha": alpha, "std_error": se,
                            "mean_error": me, "updated": n})
            if log is not None:
                log(f"calibration {it:3d}: alpha {alpha:.3f}  largest errors: std {se:.2e} "
                    f"mean {me:.2e}  ({n} updated)")
            stats = measure(model, batch, run)
        result = CalibrationResult(iterations=len(history), converged=converged,
                                   std_error=se, mean_error=me, history=history)
        _share_best(model, result, loss_fn)
    finally:
        model.train(was_training)
    return result


def _share_best(model, result: CalibrationResult, loss_fn) -> None:
    """Under torch.distributed: every rank's loss is gathered, the lowest rank wins and
    broadcasts every scaler's ``a`` and ``b``."""
    import torch.distributed as dist

    own = float(loss_fn(model)) if loss_fn is not None else result.std_error + result.mean_error
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        result.losses, result.rank = [own], 0
        return
    params = [p for s in _scalers(model) for p in (s.a, s.b)]
    device = params[0].device
    losses = [torch.zeros(1, dtype=torch.float64, device=device)
              for _ in range(dist.get_world_size())]
    mine = torch.tensor([own if math.isfinite(own) else math.inf], dtype=torch.float64,
                        device=device)
    dist.all_gather(losses, mine)
    values = [float(v) for v in losses]
    best = min(range(len(values)), key=lambda r: (values[r], r))
    for p in params:
        dist.broadcast(p.data, src=best)
    result.losses, result.rank = values, best
