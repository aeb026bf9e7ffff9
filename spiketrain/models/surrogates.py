"""Moved to :mod:`spiketrain.models.snn.surrogates`; this name stays for existing imports."""
from .snn.surrogates import SURROGATE_GRADS, spike, surrogate_grad  # noqa: F401
