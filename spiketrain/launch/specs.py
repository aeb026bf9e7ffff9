"""The ``strategy:`` and ``task:`` sections of a config: a registered name or a class path
plus options, validated once (the strategy instance built here is the one that trains)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from .checks import ConfigError, budget_mapping as _budget, one_line as _one_line, suggest


@dataclass
class StrategySpec:
    """``strategy:`` a registered name or a class path, its options, and the instance built
    (once) when the config was validated."""

    name: str = "bptt"
    options: dict = field(default_factory=dict)
    cls: Optional[str] = None
    instance: Any = field(default=None, repr=False, compare=False)

    @property
    def target(self) -> str:
        return self.cls or self.name

    def build(self):
        """The strategy instance (the validated one the first time, a fresh one after)."""
        from .. import strategies
        inst, self.instance = self.instance, None
        return inst if inst is not None else strategies.get(self.target, **self.options)


@dataclass
class TaskSpec:
    """``task:`` a registered name or a class path, and its options."""

    name: Optional[str] = "classification"
    cls: Optional[str] = None
    options: dict = field(default_factory=dict)

    @property
    def target(self) -> str:
        return self.cls or self.name

    def build(self):
        """A Task instance."""
        from ..trainer.tasks import get_task
        return get_task(self.target, **self.options)


def _strategy_spec(raw: Any) -> StrategySpec:
    from .. import strategies

    if raw is None:
        raw = "bptt"
    cls_path = None
    if isinstance(raw, str):
        name, options = raw, {}
    elif isinstance(raw, dict):
        options = dict(raw)
        name, cls_path = options.pop("name", None), options.pop("class", None)
        if name is not None and cls_path is not None:
            raise ConfigError("strategy: give either strategy.name or strategy.class, not both")
        if name is None and cls_path is None:
            raise ConfigError("strategy.name is missing; write e.g. 'strategy: {name: checkpoint, "
                              "segment: 100}' or 'strategy: bptt'")
    else:
        raise ConfigError(f"strategy must be a name or a mapping, got {raw!r}; write e.g. "
                          f"'strategy: bptt'")
    avail = strategies.available()
    if cls_path is None and not isinstance(name, str):
        raise ConfigError(f"strategy.name must be a string, got {name!r}")
    if cls_path is not None and not isinstance(cls_path, str):
        raise ConfigError(f"strategy.class must be a string, got {cls_path!r}")
    if cls_path is None and name not in avail:
        raise ConfigError(f"strategy: unknown strategy {name!r}{suggest(name, avail)} "
                          f"(choose one of {', '.join(avail)}, or strategy.class: a class path)")
    target = cls_path or name
    try:
        cls = strategies.resolve(target)
    except ValueError as e:
        raise ConfigError(f"strategy.class: {_one_line(e)}") from None
    if "budget" in options:
        options["budget"] = _budget(options["budget"])
    try:
        instance = cls(**options)
    except (ValueError, TypeError, AttributeError, KeyError) as e:
        raise ConfigError(f"strategy.{getattr(cls, 'name', target)}: {_one_line(e)}") from None
    return StrategySpec(name=instance.name if cls_path else name, options=options, cls=cls_path,
                        instance=instance)


def _task_spec(raw: Any, data) -> TaskSpec:
    from ..data.kinds import get_data_kind
    from ..trainer.tasks import available_tasks, get_task

    if raw is None:
        raw = get_data_kind(getattr(data, "kind", "synthetic")).task
    cls_path = None
    if isinstance(raw, str):
        name, options = raw, {}
    elif isinstance(raw, dict):
        options = dict(raw)
        name, cls_path = options.pop("name", None), options.pop("class", None)
        if (name is None) == (cls_path is None):
            raise ConfigError("task: give task.name or task.class (one of them); e.g. "
                              "'task: classification' or 'task: {class: mypkg.tasks:MyTask}'")
    else:
        raise ConfigError(f"task must be a name or a mapping, got {raw!r}; write e.g. "
                          f"'task: classification'")
    target = cls_path or name
    if not isinstance(target, str):
        raise ConfigError(f"task.{'class' if cls_path else 'name'} must be a string, got {target!r}")
    try:
        get_task(target, **options)
    except (ValueError, TypeError) as e:
        hint = suggest(target, available_tasks()) if cls_path is None else ""
        raise ConfigError(f"task{'.class' if cls_path else ''}: {_one_line(e)}{hint}") from None
    return TaskSpec(name=None if cls_path else name, cls=cls_path, options=options)
