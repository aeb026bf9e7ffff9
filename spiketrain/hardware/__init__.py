"""Hardware: backends (cpu, cuda, ipu), memory tiers, sparse spike ops, device profiles."""
from .backends import Backend, HardwareUnavailable, available_backends, get_backend, register_backend
from .profiles import DeviceProfile, get_profile
from .sparse import spike_linear
from .spikes import SparseSpikes, batch_stack, densify
from .units import format_size, parse_size

__all__ = ["Backend", "HardwareUnavailable", "DeviceProfile", "get_profile", "spike_linear",
           "available_backends", "get_backend", "register_backend", "format_size",
           "parse_size", "SparseSpikes", "batch_stack", "densify"]
