"""Hardware backends: where a run computes and which memory tiers it has.

``get_backend("auto")`` picks IPU, then CUDA, then CPU. Backends register by name. Every
backend reports its tiers' capacities (:meth:`Backend.tier_capacities`), builds the tier
objects strategies store into (:meth:`Backend.tiers`), says which tiers lie off the compute
device (:attr:`Backend.slow_tiers`, the one rule for "host or disk"), gives memory statistics
(:meth:`Backend.memory_stats`), a :class:`~.profiles.DeviceProfile` (bandwidths the planner
prices slow-tier traffic with), a :class:`Prefetcher` for overlapped loads where it has a
copy stream, and its capabilities (:attr:`Backend.compiled_kernels`,
:meth:`Backend.training_step`). Strategies find the backend of a tensor's device with
:func:`backend_for`.

- ``cpu``: ``device`` = RAM, ``host`` = the same RAM, ``disk`` = scratch files.
- ``cuda``: ``device`` = GPU memory (capacity from the driver), ``host`` = pinned CPU memory
  with non-blocking copies on a side stream (:class:`Prefetcher` loads what backward needs
  next while the current part runs), ``disk`` = scratch files.
- ``ipu``: see :mod:`spiketrain.hardware.ipu` (poptorch, from the Graphcore Poplar SDK).
"""
from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any, Callable

import torch

from .units import parse_size

_BACKENDS: dict[str, type["Backend"]] = {}
_DEVICE_DEFAULTS: dict[str, type["Backend"]] = {}   # torch device type -> backend class
_INSTANCES: dict[Any, "Backend"] = {}               # backend_for's cache (copy streams live here)


def register_backend(name: str, default_for: str | None = None) -> Callable[[type], type]:
    """Class decorator registering a Backend under ``name``. ``default_for``: a torch device
    type (``"cpu"``, ``"cuda"``, ...) whose tensors this backend owns by default in
    :func:`backend_for`."""

    def deco(cls):
        if not (isinstance(cls, type) and issubclass(cls, Backend)):
            raise TypeError(f"register_backend({name!r}) needs a Backend subclass, got {cls!r}")
        cls.name = name
        _BACKENDS[name] = cls
        if default_for is not None:
            _DEVICE_DEFAULTS[default_for] = cls
            _INSTANCES.clear()
        return cls

    return deco


class Backend:
    """A compute device plus its memory tiers and capabilities.

    A subclass gives :attr:`device`, :meth:`tier_capacities` and :meth:`is_available`; the
    rest has working defaults. Capabilities strategies and models ask for (never the device
    type):

    - :attr:`shares_host_memory`: the ``device`` tier *is* host RAM (a CPU), so ``host`` is
      no slower tier; :attr:`slow_tiers` / :attr:`slow_tier` follow from it.
    - :attr:`compiled_kernels`: the compiled CPU (numba) kernels may run on this backend's
      tensors; otherwise models take their eager PyTorch path.
    - :meth:`prefetcher`: overlapped loads from slower tiers (None: load when needed).
    - :meth:`training_step`: a backend that runs the whole training step itself (IPU).
    """

    name = "base"
    shares_host_memory = False
    compiled_kernels = False

    @classmethod
    def is_available(cls) -> bool:
        return False

    @classmethod
    def unavailable_reason(cls) -> str:
        return f"hardware {cls.name!r} is not available on this machine"

    @classmethod
    def for_device(cls, device: torch.device) -> "Backend":
        """An instance computing on ``device`` (default: the no-argument constructor)."""
        return cls()

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

    @property
    def slow_tiers(self) -> tuple[str, ...]:
        """Tiers off the compute device, fastest first: where offloaded tensors and coarse
        checkpoints go. ``("host", "disk")`` next to an accelerator; ``("disk",)`` where the
        device tier is host RAM itself."""
        return ("disk",) if self.shares_host_memory else ("host", "disk")

    @property
    def slow_tier(self) -> str:
        """The fastest tier off the compute device (coarse checkpoints go there)."""
        return self.slow_tiers[0]

    def profile(self):
        """The :class:`~.profiles.DeviceProfile` of this device (by backend name, else by
        device type)."""
        from .profiles import get_profile
        try:
            return get_profile(self.name)
        except ValueError:
            return get_profile(self.device.type)

    def tiers(self, budget: dict[str, Any] | None = None, scratch: str | None = None):
        """Tier objects (:class:`spiketrain.hardware.tiers.Tiers`) bounded by the smaller of
        ``budget`` and this backend's capacities; ``scratch``: the disk tier's folder."""
        from .tiers import Tiers
        caps = self.tier_capacities()
        if scratch is not None:
            caps = dict(caps, disk=disk_capacity(scratch))
        bounded = {}
        for name, cap in caps.items():
            b = (budget or {}).get(name)
            bounded[name] = cap if b is None else min(cap, parse_size(b))
        return Tiers(bounded, device=self.device, scratch=scratch)

    def prefetcher(self) -> "Prefetcher | None":
        """A :class:`Prefetcher` on a copy stream, or None where loads cannot overlap compute."""
        return None

    def training_step(self, model, optimizer, task, strategy):
        """A callable running one whole training step on this backend (``(inputs [T, B, ...],
        targets) -> (loss, preds)``: forward under ``strategy``, ``task``'s loss, backward and
        optimizer step), or None: the Trainer runs the step itself through
        :func:`spiketrain.unroll` and autograd. The IPU backend returns its compiled step."""
        return None

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
    """Free bytes on the file system of ``scratch`` (its nearest existing folder; default
    the temporary folder)."""
    path = os.path.abspath(scratch or tempfile.gettempdir())
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return shutil.disk_usage(path).free


@register_backend("cpu", default_for="cpu")
class CPUBackend(Backend):
    """CPU: tier ``device`` is RAM (``host`` the same RAM), ``disk`` is scratch files. The
    compiled (numba) kernels run here."""

    shares_host_memory = True
    compiled_kernels = True

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


@register_backend("cuda", default_for="cuda")
class CUDABackend(Backend):
    """NVIDIA GPU: ``device`` = GPU memory, ``host`` = pinned RAM, ``disk`` = scratch files."""

    def __init__(self, index: int = 0):
        self.index = index
        self._copy_stream = None

    @classmethod
    def for_device(cls, device: torch.device) -> "CUDABackend":
        return cls(torch.cuda.current_device() if device.index is None else device.index)

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
    """Loads on a side stream, overlapped with compute.

    ``h = p.start(load)`` queues the work on the copy stream: ``load`` is a list of tensors
    (copied to the device, non-blocking from pinned memory) or a callable returning the
    device tensors (e.g. a tier read). ``p.wait(h)`` makes the compute stream wait for that
    work and returns the tensors. Offload uses it to load the tensors backward needs next
    while the current ones are used. Without a stream (``stream=None``: a CPU device) the
    work runs at once and the tensors come back as they are.
    """

    def __init__(self, device: torch.device, stream=None):
        self.device, self.stream = torch.device(device), stream

    def start(self, load):
        if self.stream is None:
            return (list(load()) if callable(load) else list(load)), None
        # the copy stream first waits for the work queued so far (e.g. a non-blocking copy
        # into the pinned buffer it reads), then runs the load alongside later compute
        self.stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self.stream):
            out = list(load()) if callable(load) else \
                [t.to(self.device, non_blocking=True) for t in load]
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


def backend_for(device: torch.device | str | None = None, backend: Any = None) -> Backend:
    """The backend owning tensors on ``device`` (default CPU): ``backend`` (a name or an
    instance, checked to compute on ``device``) or the backend registered as the default
    for the device's type (``cpu``, ``cuda``; another type falls back to the CPU backend's
    rules with that device). Instances are cached per device."""
    if backend is None:
        hit = _INSTANCES.get(device)  # fast path: asked per kernel call
        if hit is not None:
            return hit
    given = device
    device = torch.device("cpu" if device is None else device)
    if backend is not None:
        b = get_backend(backend) if isinstance(backend, str) else backend
        if not isinstance(b, Backend):
            raise TypeError(f"backend must be a name or a Backend instance, got {type(b).__name__}")
        if not _same_device(b.device, device):
            raise ValueError(f"backend {b.name!r} computes on {b.device} but the tensors are on "
                             f"{device}; move the model to {b.device} or pick another backend")
        return b
    if device not in _INSTANCES:
        cls = _DEVICE_DEFAULTS.get(device.type)
        _INSTANCES[device] = cls.for_device(device) if cls is not None else _OtherDevice(device)
    b = _INSTANCES[device]
    if isinstance(given, (str, torch.device)) or given is None:
        _INSTANCES[given] = b
    return b


def _same_device(a: torch.device, b: torch.device) -> bool:
    a, b = torch.device(a), torch.device(b)
    return a.type == b.type and (a.index or 0) == (b.index or 0)


class _OtherDevice(CPUBackend):
    """A device type no backend claims (e.g. ``mps``): the CPU backend's tiers and rules
    (its ``host`` tier keeps references, so it is no slower tier), on that device."""

    compiled_kernels = False

    def __init__(self, device: torch.device):
        self._device = torch.device(device)

    @property
    def device(self) -> torch.device:
        return self._device


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

