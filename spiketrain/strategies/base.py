"""Strategy interface and the report every unroll produces."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple, Optional

from torch import Tensor

from ..hardware.units import format_size, parse_size


@dataclass
class Report:
    """What one unroll cost. ``peak_bytes`` maps tier name -> peak bytes held there by the
    strategy (activations saved for backward and checkpoints, not parameters or inputs)."""

    strategy: str
    steps: int = 0
    peak_bytes: dict[str, int] = field(default_factory=dict)
    recomputed_steps: int = 0
    bytes_moved: int = 0
    schedule: str | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        peaks = ", ".join(f"{k}={format_size(v)}" for k, v in self.peak_bytes.items())
        return (f"{self.strategy}: T={self.steps} peak[{peaks}] recomputed={self.recomputed_steps}"
                f" moved={format_size(self.bytes_moved)}" + (f" schedule={self.schedule}" if self.schedule else ""))


class OnlineResult(NamedTuple):
    """What an online strategy (e-prop) returns for one call: ``loss``, the summed per-step
    loss whose ``backward()`` delivers the strategy's gradients, and ``readout``, the running
    readout reduced over time by the model (``[B, C]``, detached), or None."""

    loss: Tensor
    readout: Optional[Tensor] = None


class BudgetError(RuntimeError):
    """A strategy's plan cannot fit its memory budget (raised before running)."""


class Strategy:
    """A memory strategy: runs ``model`` over ``inputs [T, B, ...]`` and returns outputs
    ``[T, B, ...]`` attached to autograd, deciding what the backward pass keeps and where.

    Subclasses implement :meth:`run`. ``budget`` maps tier -> size (``"2GiB"`` or bytes).
    """

    name = "base"
    online = False  # True: takes step_loss/targets and returns the summed loss (e-prop)

    def __init__(self, budget: dict[str, Any] | None = None, **options: Any):
        if options:
            raise ValueError(f"strategy {self.name!r} got unknown option(s) {sorted(options)}")
        self.budget = {k: parse_size(v) for k, v in (budget or {}).items()}
        self.report = Report(self.name)

    def run(self, model, inputs: Tensor, state=None):  # pragma: no cover - abstract
        """Called by :func:`spiketrain.unroll` inside the model's forward. Online strategies
        take the per-call ``step_loss`` and ``targets`` as keyword arguments and return an
        :class:`OnlineResult`; nothing of a call is kept on the instance but its report."""
        raise NotImplementedError

    @classmethod
    def candidates(cls, ctx) -> list:
        """Configurations of this strategy that ``auto`` may pick, each priced for ``ctx``
        (a :class:`spiketrain.strategies.planning.PlanContext`): a list of
        ``ctx.candidate(options, desc, need {tier: bytes}, est_s)``. Default: none (``auto``
        never picks this strategy)."""
        return []

    def check_budget(self, need: dict[str, int]) -> None:
        """Refuse (BudgetError) if ``need`` exceeds the budget on any tier."""
        over = {t: n for t, n in need.items() if t in self.budget and n > self.budget[t]}
        if over:
            parts = ", ".join(f"{t}: needs {format_size(n)} > budget {format_size(self.budget[t])}"
                              for t, n in over.items())
            raise BudgetError(f"strategy {self.name!r} cannot fit its budget ({parts}); raise the "
                              f"budget or pick another strategy (e.g. 'auto')")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(budget={self.budget})"
