"""Hardware backends: where a run computes and which memory tiers it has.

``get_backend("auto")`` picks IPU, then CUDA, then CPU. Backends register by name.
Every backend reports its tiers' capacities (:meth:`Backend.tier_capacities`), builds the
tier objects strategies store into (:meth:`Backend.tiers`), gives memory statistics
(:meth:`Backend.memory_stats`) and a :class:`~.profiles.DeviceProfile` for planning.

- ``cpu``: ``device`` = RAM, ``host`` = the same RAM, ``disk`` = memory-mapped/scratch files.
- ``cuda``: ``device`` = GPU memory (capacity from the driver), ``host`` = pinned CPU memory
  with non-blocking copies on a side stream (:class:`Prefetcher` loads the next segment
  while the current one runs backward), ``disk`` = scratch files.
- ``ipu``: see :mod:`spiketrain.hardware.ipu` (poptorch, from the Graphcore Poplar SDK).
"""
from __future__ import annotations

import shutil
import tempfile
from typing import Any, Callable

import torch

from .units import parse_size

_BACKENDS: dict[str, type["Backend"]] = {}


def register_backend(name: str) -> Callable[[type], type]:
    """Class decorator registering a Backend under ``name``."""

    def deco(cls):
        cls.name = name
        _BACKENDS[name] = cls
        return cls

    return deco


class Backend:
    """A compute device plus its memory tiers."""

    name = "base"

    @classmethod
    def is_available(cls) -> bool:
        return False

    @classmethod
    def unavailable_reason(cls) -> str:
        return f"hardware {cls.name!r} is not available on this machine"

    @property
    def device(self) -> torch.device:  # pragma: no cover - abstract
        raise NotImplementedError

    def synchronize(self) -> None:
        """Wait for queued work (no-op on CPU)."""

    def tier_capacities(self) -> dict[str, int]:
        """Bytes each tier can hold: ``{"device": ..., "host": ..., "disk": ...}``."""
        raise NotImplementedError  # pragma: no cover

    def memory_stats(self) -> dict[str, int]:
        """Current and peak bytes in use on the device tier (``allocated``, ``peak``,
        ``total``) where the runtime reports them."""
        return {}

    def reset_peak(self) -> None:
        """Start a new peak measurement."""

    def profile(self):
        """The :class:`~.profiles.DeviceProfile` of this device."""
        from .profiles import get_profile
        return get_profile(self.name)

    def tiers(self, budget: dict[str, Any] | None = None, scratch: str | None = None):
        """Tier objects (:class:`spiketrain.hardware.tiers.Tiers`) bounded by the smaller of
        ``budget`` and this backend's capacities."""
        from .tiers import Tiers
        caps = self.tier_capacities()
        bounded = {}
        for name, cap in caps.items():
            b = (budget or {}).get(name)
            bounded[name] = cap if b is None else min(cap, parse_size(b))
        return Tiers(bounded, device=self.device, scratch=scratch)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(device={self.device})"


def _ram() -> tuple[int, int]:
    """(total, available) RAM bytes."""
    total = avail = 0
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                k, v = line.split(":", 1)
                if k == "MemTotal":
                    total = int(v.split()[0]) * 1024
                elif k == "MemAvailable":
                    avail = int(v.split()[0]) * 1024
    except OSError:
        import os
        total = avail = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return total, avail or total


def _rss() -> tuple[int, int]:
    """(current, peak) resident bytes of this process."""
    cur = peak = 0
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    cur = int(line.split()[1]) * 1024
                elif line.startswith("VmHWM:"):
                    peak = int(line.split()[1]) * 1024
    except OSError:
        pass
    return cur, peak


def disk_capacity(scratch: str | None = None) -> int:
    return shutil.disk_usage(scratch or tempfile.gettempdir()).free


@register_backend("cpu")
class CPUBackend(Backend):
    """CPU: tier ``device`` is RAM, ``disk`` is memory-mapped scratch files."""

    @classmethod
    def is_available(cls) -> bool:
        return True

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def tier_capacities(self) -> dict[str, int]:
        total, avail = _ram()
        return {"device": avail, "host": avail, "disk": disk_capacity()}

    def memory_stats(self) -> dict[str, int]:
        cur, peak = _rss()
        return {"allocated": cur, "peak": peak, "total": _ram()[0]}

    def reset_peak(self) -> None:
        try:  # Linux: writing 5 resets the peak-RSS counter (VmHWM)
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass


@register_backend("cuda")
class CUDABackend(Backend):
    """NVIDIA GPU: ``device`` = GPU memory, ``host`` = pinned RAM, ``disk`` = scratch files."""

    def __init__(self, index: int = 0):
        self.index = index
        self._copy_stream = None

    @classmethod
    def is_available(cls) -> bool:
        return torch.cuda.is_available()

    @classmethod
    def unavailable_reason(cls) -> str:
        return ("hardware 'cuda' is not available: torch sees no CUDA device "
                f"(torch {torch.__version__}, built with CUDA {torch.version.cuda})")

    @property
    def device(self) -> torch.device:
        return torch.device("cuda", self.index)

    def synchronize(self) -> None:
        torch.cuda.synchronize(self.device)

    def tier_capacities(self) -> dict[str, int]:
        free, total = torch.cuda.mem_get_info(self.device)
        return {"device": int(total), "host": _ram()[1], "disk": disk_capacity()}

    def memory_stats(self) -> dict[str, int]:
        return {"allocated": torch.cuda.memory_allocated(self.device),
                "peak": torch.cuda.max_memory_allocated(self.device),
                "total": torch.cuda.get_device_properties(self.device).total_memory}

    def reset_peak(self) -> None:
        torch.cuda.reset_peak_memory_stats(self.device)

    def profile(self):
        from .profiles import cuda_profile
        return cuda_profile(self.index)

    @property
    def copy_stream(self):
        """Side stream for host<->device copies (overlaps with compute)."""
        if self._copy_stream is None:
            self._copy_stream = torch.cuda.Stream(self.device)
        return self._copy_stream

    def prefetcher(self) -> "Prefetcher":
        return Prefetcher(self.device, self.copy_stream)


class Prefetcher:
    """Non-blocking host->device copies on a side stream.

    ``h = p.start(cpu_tensors)`` queues the copies (pinned sources copy asynchronously);
    ``p.wait(h)`` makes the compute stream wait for them and returns the device tensors.
    Used to load the next segment's checkpoint while the current segment runs backward.
    On a CPU device the copies are plain references.
    """

    def __init__(self, device: torch.device, stream=None):
        self.device, self.stream = torch.device(device), stream

    def start(self, tensors: list[torch.Tensor]):
        if self.device.type != "cuda":
            return list(tensors), None
        with torch.cuda.stream(self.stream):
            out = [t.to(self.device, non_blocking=True) for t in tensors]
            event = torch.cuda.Event()
            event.record(self.stream)
        return out, event

    def wait(self, handle) -> list[torch.Tensor]:
        out, event = handle
        if event is not None:
            torch.cuda.current_stream(self.device).wait_event(event)
            for t in out:  # keep the memory alive for the compute stream
                t.record_stream(torch.cuda.current_stream(self.device))
        return out


class HardwareUnavailable(RuntimeError):
    """The requested backend cannot run here (message says why and what to use instead)."""


AUTO_ORDER = ["ipu", "cuda", "cpu"]


def available_backends() -> list[str]:
    """Registered backend names."""
    return sorted(_BACKENDS)


def get_backend(name: str = "auto") -> Backend:
    """A backend instance by name (``auto`` = first available of IPU, CUDA, CPU)."""
    if isinstance(name, Backend):
        return name
    if name == "auto":
        for n in AUTO_ORDER:
            if n in _BACKENDS and _BACKENDS[n].is_available():
                return _BACKENDS[n]()
        return CPUBackend()
    if name == "gpu":
        name = "cuda"
    if name not in _BACKENDS:
        raise ValueError(f"unknown hardware {name!r}; choose auto or one of {available_backends()}")
    cls = _BACKENDS[name]
    if not cls.is_available():
        raise HardwareUnavailable(cls.unavailable_reason() + ("" if "hardware: auto" in
                                  cls.unavailable_reason() else "; use hardware: auto or cpu"))
    return cls()


from . import ipu  # noqa: E402,F401  (registers "ipu"; imports poptorch only when used)
