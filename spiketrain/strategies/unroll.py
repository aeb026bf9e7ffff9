"""``spiketrain.unroll``: run a model over time under a memory strategy."""
from __future__ import annotations

from typing import Any

from torch import Tensor

from ..models.base import unwrap
from .base import Report, Strategy
from .registry import get

_LAST: list[Strategy] = []


def unroll(model, inputs: Tensor, strategy: str | Strategy = "bptt", state=None,
           step_loss=None, targets=None, **options: Any):
    """Run ``model`` over ``inputs [T, B, ...]`` and return outputs ``[T, B, ...]``
    attached to autograd (``loss.backward()`` works as usual).

    Online strategies (``strategy.online``, e.g. e-prop) take ``step_loss(y_t, targets[t])
    -> scalar`` and time-major ``targets`` and return the summed loss instead of outputs.

    ``strategy`` is a registered name (options go to it) or a Strategy instance.
    ``model`` may be wrapped (DistributedDataParallel): the call goes through the
    wrapper's forward so its gradient hooks see it. The strategy's report is then in
    ``strategy.report`` and :func:`last_report`.
    """
    strat = get(strategy, **options)
    if inputs.dim() < 2:
        raise ValueError(f"inputs must be time-major [T, B, ...], got shape {tuple(inputs.shape)}")
    if not hasattr(unwrap(model), "step"):
        raise TypeError(f"{type(model).__name__} is not a RecurrentModel (needs init_state/step)")
    if step_loss is not None or targets is not None:
        if not getattr(strat, "online", False):
            raise ValueError(f"strategy {strat.name!r} is not online: step_loss/targets are for "
                             f"online strategies such as 'eprop'; compute the loss on the outputs")
        strat.step_loss, strat.targets = step_loss, targets
    elif getattr(strat, "online", False):
        raise ValueError(f"strategy {strat.name!r} needs an online loss: pass step_loss=fn and "
                         f"targets=y (time-major) to unroll")
    strat.report = Report(strat.name)
    _LAST[:] = [strat]
    return model(inputs, _runner=strat.run, state=state)


def last_report() -> Report | None:
    """The report of the most recent :func:`unroll` (backward-side figures complete after
    ``backward()``)."""
    return _LAST[0].report if _LAST else None
