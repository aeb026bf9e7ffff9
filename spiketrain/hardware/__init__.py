"""Hardware: backends (cpu, cuda, ipu), memory tiers, sparse spike ops, device profiles."""
from .backends import Backend, available_backends, get_backend, register_backend
from .spikes import SparseSpikes, batch_stack, densify
from .units import format_size, parse_size

__all__ = ["Backend", "available_backends", "get_backend", "register_backend", "format_size",
           "parse_size", "SparseSpikes", "batch_stack", "densify"]
