"""``spiketrain.unroll``: run a model over time under a memory strategy."""
from __future__ import annotations

import functools
from typing import Any

from torch import Tensor

from ..models.base import unwrap
from .base import OnlineResult, Report, Strategy
from .registry import get

_LAST: list[Strategy] = []


def _prepare(model, inputs, strategy, options) -> Strategy:
    strat = get(strategy, **options)
    if inputs.dim() < 2:
        raise ValueError(f"inputs must be time-major [T, B, ...], got shape {tuple(inputs.shape)}")
    if not hasattr(unwrap(model), "step"):
        raise TypeError(f"{type(model).__name__} is not a RecurrentModel (needs init_state/step)")
    strat.report = Report(strat.name)
    _LAST[:] = [strat]
    return strat


def unroll(model, inputs: Tensor, strategy: str | Strategy = "bptt", state=None,
           step_loss=None, targets=None, **options: Any):
    """Run ``model`` over ``inputs [T, B, ...]`` and return outputs ``[T, B, ...]``
    attached to autograd (``loss.backward()`` works as usual).

    Online strategies (``strategy.online``, e.g. e-prop) take ``step_loss(y_t, targets[t])
    -> scalar`` and time-major ``targets`` and return the summed loss instead of outputs
    (:func:`unroll_online` also returns the running readout).

    ``strategy`` is a registered name or class path (options go to it) or a Strategy
    instance. ``model`` may be wrapped (DistributedDataParallel): the call goes through the
    wrapper's forward so its gradient hooks see it. The strategy's report is then in
    ``strategy.report`` and :func:`last_report`.
    """
    if step_loss is not None or targets is not None:
        return unroll_online(model, inputs, strategy, step_loss, targets, state=state,
                             **options).loss
    strat = _prepare(model, inputs, strategy, options)
    if getattr(strat, "online", False):
        raise ValueError(f"strategy {strat.name!r} needs an online loss: pass step_loss=fn and "
                         f"targets=y (time-major) to unroll")
    return model(inputs, _runner=strat.run, state=state)


def unroll_online(model, inputs: Tensor, strategy: str | Strategy, step_loss, targets,
                  state=None, **options: Any) -> OnlineResult:
    """Run an online strategy: ``-> OnlineResult(loss, readout)``. The per-call
    ``step_loss`` and ``targets`` go into the call; nothing is stored on the strategy."""
    strat = _prepare(model, inputs, strategy, options)
    if not getattr(strat, "online", False):
        raise ValueError(f"strategy {strat.name!r} is not online: step_loss/targets are for "
                         f"online strategies such as 'eprop'; compute the loss on the outputs")
    if step_loss is None or targets is None:
        raise ValueError(f"strategy {strat.name!r} needs both step_loss=fn and targets=y")
    runner = functools.partial(_online_runner, strat, step_loss, targets)
    out = model(inputs, _runner=runner, state=state)
    if isinstance(out, OnlineResult):
        return out
    if isinstance(out, tuple) and len(out) == 2:
        return OnlineResult(*out)
    return OnlineResult(out, None)


def _online_runner(strat, step_loss, targets, model, inputs, state):
    return strat.run(model, inputs, state, step_loss=step_loss, targets=targets)


def last_report() -> Report | None:
    """The report of the most recent :func:`unroll` (backward-side figures complete after
    ``backward()``)."""
    return _LAST[0].report if _LAST else None
