"""spiketrain: train sparse recurrent models on long sequences with exact memory strategies."""
from . import hardware, models, strategies
from .models import RecurrentModel
from .strategies import last_report, unroll

__version__ = "0.1.0"


def __getattr__(name):
    # Trainer pulls in data/metrics dependencies; import it on first use.
    if name == "Trainer":
        from .trainer import Trainer
        return Trainer
    raise AttributeError(name)


__all__ = ["hardware", "models", "strategies", "RecurrentModel", "unroll", "last_report", "Trainer"]
