"""Memory strategies behind ``spiketrain.unroll``; ``get(name, **options)`` by name."""
from . import _schedules_compat  # noqa: F401  (before any schedule is built)
from . import bptt  # noqa: F401  (registers "bptt")
from . import checkpoint  # noqa: F401  (registers "checkpoint")
from . import revolve  # noqa: F401  (registers "revolve")
from . import double  # noqa: F401  (registers "double")
from . import offload  # noqa: F401  (registers "offload")
from . import auto  # noqa: F401  (registers "auto")
from . import eprop  # noqa: F401  (registers "eprop")
from .base import BudgetError, OnlineResult, Report, Strategy
from .registry import available, get, register, registered, resolve
from .unroll import last_report, unroll, unroll_online

__all__ = ["BudgetError", "OnlineResult", "Report", "Strategy", "available", "get", "register",
           "registered", "resolve", "last_report", "unroll", "unroll_online"]
