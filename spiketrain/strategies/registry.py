"""Strategy registry: ``get("checkpoint", segment=100)`` or a Strategy instance."""
from __future__ import annotations

from typing import Any, Callable

from .base import Strategy

_STRATEGIES: dict[str, type[Strategy]] = {}


def register(name: str) -> Callable[[type[Strategy]], type[Strategy]]:
    """Class decorator registering a Strategy under ``name``."""

    def deco(cls: type[Strategy]) -> type[Strategy]:
        cls.name = name
        _STRATEGIES[name] = cls
        return cls

    return deco


def available() -> list[str]:
    """Registered strategy names."""
    return sorted(_STRATEGIES)


def get(name: str | Strategy, **options: Any) -> Strategy:
    """A Strategy instance from a name and options (an instance is returned as is)."""
    if isinstance(name, Strategy):
        if options:
            raise ValueError("options cannot be given together with a Strategy instance")
        return name
    if name not in _STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose one of {available()}")
    return _STRATEGIES[name](**options)
