"""Model registry: plug models in by name or by ``"package.module:Class"`` path."""
from __future__ import annotations

from typing import Any, Callable

_MODELS: dict[str, type] = {}


def register(name: str) -> Callable[[type], type]:
    """Class decorator: ``@spiketrain.models.register("mycell")``."""

    def deco(cls: type) -> type:
        _MODELS[name] = cls
        return cls

    return deco


def available() -> list[str]:
    """Registered model names."""
    return sorted(_MODELS)


def resolve(name_or_path: str) -> type:
    """A registered name, or ``"package.module:Class"`` (also ``package.module.Class``) naming
    a :class:`~spiketrain.models.RecurrentModel` subclass (anything else is refused)."""
    if name_or_path in _MODELS:
        return _MODELS[name_or_path]
    if ":" in name_or_path or "." in name_or_path:
        from ..classpath import import_class
        from .base import RecurrentModel
        return import_class(name_or_path, RecurrentModel, "model")
    raise ValueError(f"unknown model {name_or_path!r}; registered: {available()}, "
                     f"or give a class path like 'mypkg.cells:MyCell'")


def build(name_or_path: str, **kwargs: Any):
    """Instantiate a model by name/class path with keyword arguments."""
    cls = resolve(name_or_path)
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ValueError(f"model {name_or_path!r} rejected its options: {e}") from None
