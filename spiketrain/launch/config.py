"""Experiment config: a YAML file with sections, dotted ``--set`` overrides, one-line errors.

Sections::

    model:    {name: rsnn, hidden: 256, ...}       # or {class: mypkg.cells:MyCell, ...}; the rest
                                                  # are keyword arguments of the model
    data:     {kind: synthetic, T: 100, ...}       # fields of the kind's config class
                                                  # (spiketrain.data.kinds; synthetic/shd: DataConfig)
    task:     classification                      # or {class: mypkg.tasks:MyTask, ...};
                                                  # default: the task the data kind implies
    strategy: bptt                                # or {name: checkpoint, segment: 100}, or
                                                  # {class: mypkg.strat:MyStrategy, ...}
    trainer:  {epochs: 10, batch_size: 32, lr: 1e-3, ...}   # see TrainerSection
    hardware: auto                                # auto, cpu, cuda, ipu, ...

Every mistake raises :class:`ConfigError` with one line naming the key and the fix.
Other packages add top-level sections with :func:`register_section`.
"""
from __future__ import annotations

import dataclasses
import inspect
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

import yaml

from .checks import (ConfigError, build_dataclass, check_type,
                     hints as _hints, one_line as _one_line, suggest)
from .specs import StrategySpec, TaskSpec, _strategy_spec, _task_spec  # noqa: F401

ENGINES = ["torch", "deepspeed"]


@dataclass
class TrainerSection:
    """``trainer:`` options (see :class:`spiketrain.trainer.Trainer`)."""

    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    clip_grad: Optional[float] = None
    seed: int = 0
    deterministic: bool = True
    out_dir: Optional[str] = None          # default runs/<config-stem>-<timestamp>
    snapshot_every: int = 0                # also snapshot every N steps (0: end of epoch only)
    workers: int = 1                       # > 1: data-parallel workers on Ray Train
    engine: str = "torch"                  # torch | deepspeed
    progress: bool = True
    threads: Optional[int] = None          # torch CPU threads (null: torch's default)
    on_nonfinite: Literal["stop", "skip_batch"] = "stop"   # a NaN/inf loss or gradient norm
    tensorboard: bool = False              # epoch rows as TensorBoard scalars in OUT/tensorboard


@dataclass
class ModelSpec:
    """``model:`` a registered ``name`` or a ``class`` path, plus keyword arguments."""

    name: Optional[str] = "rsnn"
    cls: Optional[str] = None
    kwargs: dict = field(default_factory=dict)

    @property
    def target(self) -> str:
        return self.cls or self.name


@dataclass
class Config:
    """A validated config."""

    model: ModelSpec
    data: Any                               # spiketrain.data.config.DataConfig
    strategy: StrategySpec
    trainer: TrainerSection
    hardware: str = "auto"
    task: TaskSpec = field(default_factory=TaskSpec)
    sections: dict = field(default_factory=dict)   # registered extra sections
    source: Optional[Path] = None

    @property
    def stem(self) -> str:
        return self.source.stem if self.source else "run"

    def to_dict(self) -> dict:
        """Plain dict that :func:`validate` accepts again (written to the run folder)."""
        model = {("class" if self.model.cls else "name"): self.model.target, **self.model.kwargs}
        skey = "class" if self.strategy.cls else "name"
        strategy: Any = ({skey: self.strategy.target, **self.strategy.options}
                         if self.strategy.options or self.strategy.cls else self.strategy.name)
        tkey = "class" if self.task.cls else "name"
        task: Any = ({tkey: self.task.target, **self.task.options}
                     if self.task.options or self.task.cls else self.task.name)
        out = {"model": model, "data": _asdict(self.data), "task": task, "strategy": strategy,
               "trainer": dataclasses.asdict(self.trainer), "hardware": self.hardware}
        for k, v in self.sections.items():
            out[k] = _asdict(v)
        return out


def _asdict(obj):
    return dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else obj


_SECTIONS: dict[str, type] = {}


def register_section(name: str, cls: type) -> None:
    """Add a top-level config section validated against dataclass ``cls``."""
    _SECTIONS[name] = cls


BASE_KEYS = ("model", "data", "task", "strategy", "trainer", "hardware")


# ----------------------------------------------------------------------------- sections
def _model_spec(raw: Any, data) -> ModelSpec:
    from .. import models

    if raw is None:
        raw = {}
    if isinstance(raw, str):
        raw = {"name": raw}
    if not isinstance(raw, dict):
        raise ConfigError(f"model must be a name or a mapping, got {raw!r}; write e.g. "
                          f"'model: {{name: rsnn, hidden: 256}}'")
    raw = dict(raw)
    if "nir" in raw:   # model: {nir: graph.nir, ...}: a model built from a NIR graph
        raw = {"name": "nir", "path": raw.pop("nir"), **raw}
    name, cls_path = raw.pop("name", None), raw.pop("class", None)
    if name is not None and cls_path is not None:
        raise ConfigError("model: give either model.name or model.class, not both")
    target = cls_path or name or "rsnn"
    key = "model.class" if cls_path else "model.name"
    if not isinstance(target, str):
        raise ConfigError(f"{key} must be a string, got {target!r}")
    try:
        cls = models.resolve(target)
    except ValueError as e:
        hint = suggest(target, models.available()) if cls_path is None else ""
        raise ConfigError(f"{key}: {_one_line(e)}{hint}") from None
    if not callable(cls):
        raise ConfigError(f"{key}: {target!r} is not a class")
    try:
        sig = inspect.signature(cls)
    except (TypeError, ValueError):
        sig = None
    if sig is not None:
        params = sig.parameters
        var_kw = any(p.kind is p.VAR_KEYWORD for p in params.values())
        named = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        hints = _hints(cls.__init__) if isinstance(cls, type) else _hints(cls)
        for k, v in list(raw.items()):
            if k not in params and not var_kw:
                raise ConfigError(f"unknown config key 'model.{k}' for model {target!r}"
                                  f"{suggest(f'model.{k}', [f'model.{n}' for n in named])} "
                                  f"(options: {', '.join(named)})")
            if k in hints:
                raw[k] = check_type(v, hints[k], f"model.{k}")
        # sizes follow the data unless given
        if data is not None:
            for k, src in (("n_in", "n_in"), ("n_out", "n_classes")):
                if k in params and k not in raw and hasattr(data, src):
                    raw[k] = getattr(data, src)
            # a data kind may name more sizes it fixes (events: num_classes, bins, input_size)
            sizes = data.model_sizes() if callable(getattr(data, "model_sizes", None)) else {}
            for k, v in sizes.items():
                if k in params and k not in raw:
                    raw[k] = v
    return ModelSpec(name=None if cls_path else target, cls=cls_path, kwargs=raw)


def _data_config(raw: Any):
    from ..data.kinds import get_data_kind

    kind = raw.get("kind", "synthetic") if isinstance(raw, dict) else "synthetic"
    if not isinstance(kind, str):
        raise ConfigError(f"data.kind must be a string, got {kind!r}")
    try:
        spec = get_data_kind(kind)
    except ValueError as e:
        raise ConfigError(_one_line(e)) from None
    data = build_dataclass(spec.config, raw, "data")
    for k in ("path", "test_path"):
        p = getattr(data, k, None)
        if p and kind == "shd" and not Path(p).expanduser().exists():
            raise ConfigError(f"data.{k}: file '{p}' not found; give the path of an SHD HDF5 file "
                              f"(e.g. --set data.{k}=shd_train.h5) or use data.kind: synthetic")
    return data


def _trainer_section(raw: Any) -> TrainerSection:
    from ..trainer.optim import OPTIMIZERS

    tr = build_dataclass(TrainerSection, raw, "trainer")
    if tr.optimizer.lower() not in OPTIMIZERS:
        raise ConfigError(f"trainer.optimizer: unknown optimizer {tr.optimizer!r}"
                          f"{suggest(tr.optimizer, OPTIMIZERS)} (choose one of {', '.join(OPTIMIZERS)})")
    if tr.engine not in ENGINES:
        raise ConfigError(f"trainer.engine: unknown engine {tr.engine!r}{suggest(tr.engine, ENGINES)} "
                          f"(choose one of {', '.join(ENGINES)})")
    for k in ("epochs", "snapshot_every"):
        if getattr(tr, k) < 0:
            raise ConfigError(f"trainer.{k} must be >= 0, got {getattr(tr, k)}")
    for k in ("batch_size", "workers"):
        if getattr(tr, k) < 1:
            raise ConfigError(f"trainer.{k} must be >= 1, got {getattr(tr, k)}")
    if not (math.isfinite(tr.lr) and tr.lr > 0):
        raise ConfigError(f"trainer.lr must be a finite number > 0, got {tr.lr}; e.g. "
                          f"--set trainer.lr=0.001")
    if tr.lr > 1e6:
        raise ConfigError(f"trainer.lr={tr.lr:g} is far beyond any usable learning rate (the "
                          f"weights overflow); e.g. --set trainer.lr=0.001")
    if not (math.isfinite(tr.weight_decay) and tr.weight_decay >= 0):
        raise ConfigError(f"trainer.weight_decay must be a finite number >= 0, got "
                          f"{tr.weight_decay}")
    if tr.clip_grad is not None and not (math.isfinite(tr.clip_grad) and tr.clip_grad > 0):
        raise ConfigError(f"trainer.clip_grad must be a finite max gradient norm > 0 (or null: no "
                          f"clipping), got {tr.clip_grad}; e.g. --set trainer.clip_grad=1.0")
    if tr.threads is not None and tr.threads < 1:
        raise ConfigError(f"trainer.threads must be >= 1 (or null: torch's default), got "
                          f"{tr.threads}")
    return tr


def _hardware(raw: Any) -> str:
    from ..hardware import available_backends

    choices = ["auto"] + available_backends()
    if not isinstance(raw, str) or raw not in choices:
        raise ConfigError(f"hardware: unknown hardware {raw!r}{suggest(str(raw), choices)} "
                          f"(choose one of {', '.join(choices)})")
    return raw


def validate(raw: Any, source: Path | None = None) -> Config:
    """A :class:`Config` from a plain dict (as read from YAML, overrides applied)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config must be a mapping of sections ({', '.join(BASE_KEYS)}), got "
                          f"{type(raw).__name__}")
    known = list(BASE_KEYS) + list(_SECTIONS)
    for k in raw:
        if k not in known:
            raise ConfigError(f"unknown config key '{k}'{suggest(k, known)} "
                              f"(valid sections: {', '.join(known)})")
    data = _data_config(raw.get("data"))
    model = _model_spec(raw.get("model"), data)
    task = _task_spec(raw.get("task"), data)
    strategy = _strategy_spec(raw.get("strategy"))
    trainer = _trainer_section(raw.get("trainer"))
    hardware = _hardware(raw.get("hardware", "auto"))
    sections = {k: build_dataclass(cls, raw.get(k), k) for k, cls in _SECTIONS.items()}
    return Config(model=model, data=data, strategy=strategy, trainer=trainer, hardware=hardware,
                  task=task, sections=sections, source=source)


# ----------------------------------------------------------------------------- loading
def read_yaml(path: str | Path) -> dict:
    """The mapping in a YAML file; ConfigError for a missing file or bad YAML."""
    p = Path(path)
    if not p.is_file():
        near = sorted(x.name for x in p.parent.glob("*.yaml")) if p.parent.is_dir() else []
        hint = f" ({p.parent}/ has: {', '.join(near)})" if near else ""
        raise ConfigError(f"config file '{path}' not found; check the path{hint}")
    try:
        raw = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"config file '{path}'{where}: invalid YAML "
                          f"({_one_line(getattr(e, 'problem', None) or e)})") from None
    return raw or {}


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"trainer.epochs=3"`` -> ``(["trainer", "epochs"], 3)``; the value is read as YAML."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set expects KEY=VALUE with a dotted key, got {item!r}; "
                          f"e.g. --set trainer.epochs=3")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        value = text
    return key.split("."), value


def apply_overrides(raw: dict, overrides: list[str] | None) -> dict:
    """Apply ``KEY=VALUE`` overrides (dotted keys) to a raw config dict (in place)."""
    for item in overrides or []:
        path, value = parse_override(item)
        node = raw
        for i, part in enumerate(path[:-1]):
            sub = node.get(part)
            if sub is None:
                sub = node[part] = {}
            elif isinstance(sub, str) and i == 0 and part in ("strategy", "model", "task"):
                sub = node[part] = {"name": sub}
            elif not isinstance(sub, dict):
                raise ConfigError(f"--set {item}: '{'.'.join(path[:i + 1])}' is a value, not a "
                                  f"section; set it directly, e.g. --set {'.'.join(path[:i + 1])}=...")
            node = sub
        node[path[-1]] = value
    return raw


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> Config:
    """Read a YAML config (None: all defaults), apply ``--set`` overrides, validate."""
    raw = read_yaml(path) if path is not None else {}
    raw = apply_overrides(raw, overrides)
    return validate(raw, Path(path) if path is not None else None)
