"""Resolve ``"package.module:Class"`` paths from configs, safely.

A config file is often shared or downloaded, so a class path in it may only ever name a
subclass of the expected base (a model, a neuron layer, a task, a strategy). Anything else
(a function such as ``os:system``, a module, an unrelated class) is refused here, before it
is called, with one line that says what was expected.
"""
from __future__ import annotations

import importlib


def split_path(path: str) -> tuple[str, str]:
    """``"pkg.mod:Cls"`` or ``"pkg.mod.Cls"`` -> ``("pkg.mod", "Cls")``."""
    if ":" in path:
        mod, _, attr = path.partition(":")
    else:
        mod, _, attr = path.rpartition(".")
    if not mod or not attr:
        raise ValueError(f"{path!r} is not a class path; write it as 'package.module:Class'")
    return mod, attr


def import_class(path: str, base: type, kind: str) -> type:
    """The class at ``path``; refused unless it is a subclass of ``base``.

    ``kind`` names what was expected in the error (``"model"``, ``"task"``, ...).
    """
    mod, attr = split_path(path)
    try:
        module = importlib.import_module(mod)
    except ImportError as e:
        raise ValueError(f"cannot import {kind} module {mod!r} ({e}); check the class path "
                         f"and that the package is on PYTHONPATH") from None
    obj = module.__dict__.get(attr, None) if hasattr(module, "__dict__") else None
    if obj is None:
        obj = getattr(module, attr, None)
    if obj is None:
        raise ValueError(f"module {mod!r} has no {kind} class {attr!r}")
    if not (isinstance(obj, type) and issubclass(obj, base)):
        what = type(obj).__name__ if not isinstance(obj, type) else f"class {obj.__name__}"
        raise ValueError(f"{path!r} is a {what}, not a {kind} (a subclass of "
                         f"{base.__module__}.{base.__qualname__}); refusing to call it")
    return obj


def split_spec(spec: dict, kind: str) -> tuple[str, dict]:
    """``{name|class: X, **options}`` -> ``(X, options)``; refuses a mapping with neither."""
    spec = dict(spec)
    key = spec.pop("class", None) or spec.pop("name", None)
    if key is None:
        raise ValueError(f"a {kind} mapping needs 'name' or 'class' "
                         f"(e.g. {{class: mypkg.module:My{kind.capitalize()}}})")
    return key, spec
