"""Data kinds: ``data.kind`` in a config names a (config class, builder, default task) triple.

Built in: ``synthetic`` and ``shd`` (spike trains, :class:`~spiketrain.data.DataConfig`,
task ``classification``). Other families register their own kind next to their reader::

    register_data_kind("events", EventDataConfig, build_event_datasets, task="detection")

The config class is a dataclass whose fields are the allowed ``data.*`` keys (unknown keys are
refused by the config checker) and whose ``validate()`` raises ``ValueError('data.<key>: ...')``;
the builder maps a config instance to ``(train_ds, test_ds or None)``. Datasets are batched by
:class:`~spiketrain.data.SpikeLoader`, which uses a dataset's ``get_batch(indices, sparse)``
(returning one ``(inputs [T, B, ...], targets)`` batch) when it has one.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class DataKind:
    """One ``data.kind``: its config dataclass, its builder and the task it implies."""

    name: str
    config: type
    build: Callable[[Any], tuple]
    task: str = "classification"


_KINDS: dict[str, DataKind] = {}
# kinds that live in optional modules, imported on first use
_LAZY = {"synthetic": "spiketrain.data", "shd": "spiketrain.data",
         "events": "spiketrain.data.events", "gen1": "spiketrain.data.events",
         "text": "spiketrain.data.text"}


def register_data_kind(name: str, config: type, build: Callable[[Any], tuple],
                       task: str = "classification") -> DataKind:
    """Register ``data.kind: name`` (see the module docstring)."""
    kind = DataKind(name, config, build, task)
    _KINDS[name] = kind
    return kind


def data_kinds() -> list[str]:
    """Known ``data.kind`` names."""
    return sorted(set(_KINDS) | set(_LAZY))


def get_data_kind(name: str) -> DataKind:
    """The registered kind ``name`` (importing its module when it is an optional one)."""
    if name not in _KINDS and name in _LAZY:
        try:
            importlib.import_module(_LAZY[name])
        except ImportError as e:
            raise ValueError(f"data.kind {name!r} is unavailable here: {e}") from None
    if name not in _KINDS:
        raise ValueError(f"data.kind: unknown kind {name!r}; use one of {', '.join(data_kinds())}")
    return _KINDS[name]
