"""Strategy registry: ``get("checkpoint", segment=100)``, a class path, a spec or an instance.

A strategy spec is resolved once (:func:`get`: name or ``"pkg.mod:Class"``, options,
validation by constructing it) and the resulting instance is what reaches ``unroll``.
"""
from __future__ import annotations

from typing import Any, Callable

from .base import Strategy

_STRATEGIES: dict[str, type[Strategy]] = {}


def register(name: str) -> Callable[[type[Strategy]], type[Strategy]]:
    """Class decorator registering a Strategy subclass under ``name``."""

    def deco(cls: type[Strategy]) -> type[Strategy]:
        if not (isinstance(cls, type) and issubclass(cls, Strategy)):
            raise TypeError(f"register({name!r}) needs a Strategy subclass, got {cls!r}")
        cls.name = name
        _STRATEGIES[name] = cls
        return cls

    return deco


def available() -> list[str]:
    """Registered strategy names."""
    return sorted(_STRATEGIES)


def registered() -> dict[str, type[Strategy]]:
    """``{name: class}`` of every registered strategy (a copy)."""
    return dict(_STRATEGIES)


def resolve(name_or_path: str) -> type[Strategy]:
    """A registered name or a class path naming a :class:`Strategy` subclass."""
    if name_or_path in _STRATEGIES:
        return _STRATEGIES[name_or_path]
    if ":" in name_or_path or "." in name_or_path:
        from ..classpath import import_class
        return import_class(name_or_path, Strategy, "strategy")
    raise ValueError(f"unknown strategy {name_or_path!r}; choose one of {available()} or give a "
                     f"class path like 'mypkg.strat:MyStrategy'")


def get(name: Any, **options: Any) -> Strategy:
    """A Strategy instance from a name or class path and options, or from a spec mapping
    ``{name|class: ..., **options}``; an instance is returned as is."""
    if isinstance(name, Strategy):
        if options:
            raise ValueError("options cannot be given together with a Strategy instance")
        return name
    if isinstance(name, dict):
        from ..classpath import split_spec
        key, spec = split_spec(name, "strategy")
        return get(key, **spec, **options)
    if not isinstance(name, str):
        raise TypeError(f"strategy must be a name, a class path or a Strategy instance, got "
                        f"{type(name).__name__}")
    cls = resolve(name)
    return cls(**options)

