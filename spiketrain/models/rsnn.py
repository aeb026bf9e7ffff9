"""Moved to :mod:`spiketrain.models.snn.rsnn`; this name stays for class paths in configs
(``spiketrain.models.rsnn:RSNN``)."""
from .snn.readout import READOUTS, reduce_outputs  # noqa: F401
from .snn.rsnn import RSNN  # noqa: F401
