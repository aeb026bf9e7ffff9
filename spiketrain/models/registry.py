"""Model registry: plug models in by name or by ``"package.module:Class"`` path."""
from __future__ import annotations

import importlib
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
    """A registered name, or ``"package.module:Class"`` (also ``package.module.Class``)."""
    if name_or_path in _MODELS:
        return _MODELS[name_or_path]
    if ":" in name_or_path or "." in name_or_path:
        mod, _, attr = name_or_path.partition(":") if ":" in name_or_path else name_or_path.rpartition(".")
        try:
            module = importlib.import_module(mod)
        except ImportError as e:
            raise ValueError(f"cannot import model module {mod!r} ({e}); check the class path "
                             f"and that the package is on PYTHONPATH") from None
        try:
            return getattr(module, attr)
        except AttributeError:
            raise ValueError(f"module {mod!r} has no class {attr!r}") from None
    raise ValueError(f"unknown model {name_or_path!r}; registered: {available()}, "
                     f"or give a class path like 'mypkg.cells:MyCell'")


def build(name_or_path: str, **kwargs: Any):
    """Instantiate a model by name/class path with keyword arguments."""
    cls = resolve(name_or_path)
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ValueError(f"model {name_or_path!r} rejected its options: {e}") from None
