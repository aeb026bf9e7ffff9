"""Memory strategies behind ``spiketrain.unroll``; ``get(name, **options)`` by name."""
from . import bptt  # noqa: F401  (registers "bptt")
from . import eprop  # noqa: F401  (registers "eprop")
from .base import BudgetError, Report, Strategy
from .registry import available, get, register
from .unroll import last_report, unroll

__all__ = ["BudgetError", "Report", "Strategy", "available", "get", "register", "last_report",
           "unroll"]
