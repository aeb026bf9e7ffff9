"""Moved to :mod:`spiketrain.models.snn.neurons`; this name stays for class paths in configs."""
from .snn.neurons import ALIFLayer, LIFLayer, NeuronLayer  # noqa: F401
from .snn.registry import NEURONS  # noqa: F401
