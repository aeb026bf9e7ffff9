"""Task registry: ``get_task("classification")``, a class path, a config mapping or an instance."""
from __future__ import annotations

import importlib
from typing import Any, Callable

from .base import Task

_TASKS: dict[str, type[Task]] = {}
# built-in tasks live in their own modules, imported on first use
_BUILTIN = {"classification": "spiketrain.trainer.tasks.classification",
            "detection": "spiketrain.trainer.tasks.detection",
            "language_model": "spiketrain.trainer.tasks.language_model"}


def register_task(name: str) -> Callable[[type[Task]], type[Task]]:
    """Class decorator: ``@register_task("mytask")`` on a :class:`Task` subclass."""

    def deco(cls: type[Task]) -> type[Task]:
        if not (isinstance(cls, type) and issubclass(cls, Task)):
            raise TypeError(f"register_task({name!r}) needs a Task subclass, got {cls!r}")
        cls.name = name
        _TASKS[name] = cls
        return cls

    return deco


def available_tasks() -> list[str]:
    """Task names (registered and built-in)."""
    return sorted(set(_TASKS) | set(_BUILTIN))


def resolve_task(name_or_path: str) -> type[Task]:
    """A registered/built-in name or ``"package.module:Class"`` naming a Task subclass."""
    from ...classpath import import_class
    if name_or_path not in _TASKS and name_or_path in _BUILTIN:
        importlib.import_module(_BUILTIN[name_or_path])
    if name_or_path in _TASKS:
        return _TASKS[name_or_path]
    if ":" in name_or_path or "." in name_or_path:
        return import_class(name_or_path, Task, "task")
    raise ValueError(f"unknown task {name_or_path!r}; choose one of {available_tasks()} or give "
                     f"a class path like 'mypkg.tasks:MyTask'")


def get_task(spec: Any = "classification", **options: Any) -> Task:
    """A Task instance from a name, a class path, a mapping ``{name|class: ..., **options}``
    or an instance (returned as is)."""
    if isinstance(spec, Task):
        if options:
            raise ValueError("options cannot be given together with a Task instance")
        return spec
    if isinstance(spec, dict):
        from ...classpath import split_spec
        key, spec = split_spec(spec, "task")
        return get_task(key, **spec, **options)
    if not isinstance(spec, str):
        raise TypeError(f"task must be a name, a class path, a mapping or a Task, got "
                        f"{type(spec).__name__}")
    cls = resolve_task(spec)
    try:
        return cls(**options)
    except TypeError as e:
        raise ValueError(f"task {spec!r} rejected its options: {e}") from None
