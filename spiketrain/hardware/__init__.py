"""Hardware: backends (cpu, cuda, ipu), memory tiers, sparse spike ops, device profiles."""
from .backends import (Backend, HardwareUnavailable, Prefetcher, available_backends, backend_for,
                       get_backend, register_backend)
from . import ipu  # noqa: F401  (registers "ipu"; imports poptorch only when used)
from .profiles import DeviceProfile, get_profile
from .sparse import spike_linear
from .spikes import SparseSpikes, batch_stack, densify
from .units import format_size, parse_size

__all__ = ["Backend", "HardwareUnavailable", "Prefetcher", "backend_for", "DeviceProfile",
           "get_profile", "spike_linear", "available_backends", "get_backend", "register_backend",
           "format_size", "parse_size", "SparseSpikes", "batch_stack", "densify"]
