"""Config checking: :class:`ConfigError` and type checks of values against dataclass fields.

Each check raises ConfigError with one line naming the key and the fix, with a "did you mean"
hint for near-miss keys.
"""
from __future__ import annotations

import dataclasses
import difflib
import inspect
import math
import types
import typing
from typing import Any, Literal, Union

import yaml


class ConfigError(ValueError):
    """A bad config: the message is one line naming the key and the fix."""


def suggest(key: str, choices) -> str:
    """`` did you mean 'x'?`` for the closest of ``choices`` (empty if none is close)."""
    m = difflib.get_close_matches(str(key), [str(c) for c in choices], n=1, cutoff=0.6)
    return f"; did you mean '{m[0]}'?" if m else ""


def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp) if a is not type(None))
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin is not None:
        return getattr(origin, "__name__", str(origin))
    return getattr(tp, "__name__", str(tp))


def _example(value) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def check_type(value, tp, key: str):
    """``value`` checked (and for floats, coerced) against annotation ``tp``; ConfigError if not."""
    if tp is Any or tp is inspect.Parameter.empty:
        return value
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return check_type(value, a, key)
            except ConfigError:
                pass
        _bad_type(value, tp, key)
    if origin is Literal:
        if value in args:
            return value
        raise ConfigError(f"{key} must be one of {', '.join(repr(a) for a in args)}, got "
                          f"{value!r}{suggest(value, args)}")
    if origin in (list, tuple, typing.Sequence):
        if isinstance(value, (list, tuple)):
            inner = args[0] if args and args[0] is not Ellipsis else Any
            return [check_type(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
        _bad_type(value, tp, key)
    if origin is dict:
        if isinstance(value, dict):
            return value
        _bad_type(value, tp, key)
    if tp is bool:
        if isinstance(value, bool):
            return value
        _bad_type(value, tp, key)
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        _bad_type(value, tp, key)
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads '1e-3' as a string
            try:
                return float(value)
            except ValueError:
                pass
        _bad_type(value, tp, key)
    if tp is str:
        if isinstance(value, str):
            return value
        _bad_type(value, tp, key)
    if isinstance(tp, type) and tp is not type(None):
        if isinstance(value, tp):
            return value
        _bad_type(value, tp, key)
    return value


def _bad_type(value, tp, key: str):
    raise ConfigError(f"{key} must be {_type_name(tp)}, got {value!r} ({type(value).__name__}); "
                      f"fix it in the file or with --set {key}=<{_type_name(tp)}>")


def hints(obj) -> dict:
    try:
        return typing.get_type_hints(obj)
    except Exception:  # unresolvable annotations: skip type checks
        return {}


def build_dataclass(cls: type, raw: Any, prefix: str):
    """Instantiate dataclass ``cls`` from a mapping, naming unknown keys and wrong types."""
    if raw is None:
        raw = {}
    if dataclasses.is_dataclass(raw) and isinstance(raw, cls):
        return raw
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix} must be a mapping of options, got {raw!r}; write e.g. "
                          f"'{prefix}: {{key: value}}'")
    names = [f.name for f in dataclasses.fields(cls)]
    field_types = hints(cls)
    kwargs = {}
    for k, v in raw.items():
        if k not in names:
            raise ConfigError(f"unknown config key '{prefix}.{k}'"
                              f"{suggest(f'{prefix}.{k}', [f'{prefix}.{n}' for n in names])} "
                              f"(valid keys in {prefix}: {', '.join(names)})")
        kwargs[k] = check_type(v, field_types.get(k, Any), f"{prefix}.{k}")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:
        msg = one_line(e)
        raise ConfigError(msg if msg.startswith(f"{prefix}.") else f"{prefix}: {msg}") from None


def one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


def budget_mapping(raw: Any) -> dict:
    """``strategy.budget``: a mapping tier -> size, checked here (one line per mistake)."""
    from ..hardware.tiers import TIER_NAMES
    from ..hardware.units import parse_size

    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"strategy.budget must be a mapping of tier to size, got {raw!r}; write "
                          f"e.g. --set strategy.budget={{device: 1GiB}} (tiers: "
                          f"{', '.join(TIER_NAMES)})")
    for tier, size in raw.items():
        if tier not in TIER_NAMES:
            raise ConfigError(f"strategy.budget: unknown tier {tier!r}{suggest(str(tier), TIER_NAMES)}"
                              f" (tiers: {', '.join(TIER_NAMES)})")
        try:
            n = parse_size(size)
        except (ValueError, TypeError, AttributeError, OverflowError) as e:
            raise ConfigError(f"strategy.budget.{tier}: {one_line(e)}; write a size such as "
                              f"2GiB or a number of bytes") from None
        if not (isinstance(n, (int, float)) and math.isfinite(n) and n >= 0):
            raise ConfigError(f"strategy.budget.{tier} must be a size >= 0, got {size!r}")
    return dict(raw)
