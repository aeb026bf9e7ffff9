"""Hardware backends: where a run computes and which memory tiers it has.

``get_backend("auto")`` picks IPU, then CUDA, then CPU. Backends register by name.
"""
from __future__ import annotations

from typing import Callable

import torch

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

    @property
    def device(self) -> torch.device:  # pragma: no cover - abstract
        raise NotImplementedError

    def synchronize(self) -> None:
        """Wait for queued work (no-op on CPU)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(device={self.device})"


@register_backend("cpu")
class CPUBackend(Backend):
    """CPU: tier ``device`` is RAM, ``disk`` is memory-mapped scratch files."""

    @classmethod
    def is_available(cls) -> bool:
        return True

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")


AUTO_ORDER = ["ipu", "cuda", "cpu"]


def available_backends() -> list[str]:
    """Registered backend names."""
    return sorted(_BACKENDS)


def get_backend(name: str = "auto") -> Backend:
    """A backend instance by name (``auto`` = first available of IPU, CUDA, CPU)."""
    if name == "auto":
        for n in AUTO_ORDER:
            if n in _BACKENDS and _BACKENDS[n].is_available():
                return _BACKENDS[n]()
        return CPUBackend()
    if name not in _BACKENDS:
        raise ValueError(f"unknown hardware {name!r}; choose auto or one of {available_backends()}")
    cls = _BACKENDS[name]
    if not cls.is_available():
        raise RuntimeError(f"hardware {name!r} is not available on this machine; use hardware: auto or cpu")
    return cls()
