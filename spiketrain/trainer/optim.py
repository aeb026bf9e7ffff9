"""Optimizers by name: ``build_optimizer("adam", model.parameters(), lr=1e-3)``."""
from __future__ import annotations

from typing import Any, Iterable

import torch

OPTIMIZERS = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
    "rmsprop": torch.optim.RMSprop,
}


def build_optimizer(name: str | torch.optim.Optimizer, params: Iterable, lr: float = 1e-3,
                    weight_decay: float = 0.0, **options: Any) -> torch.optim.Optimizer:
    """A torch optimizer by name (``adam``, ``adamw``, ``sgd``, ``rmsprop``) or an instance as is.

    A ``torch.optim.Optimizer`` subclass is also accepted and built with ``lr``/``weight_decay``.
    """
    if isinstance(name, torch.optim.Optimizer):
        return name
    if isinstance(name, type) and issubclass(name, torch.optim.Optimizer):
        cls = name
    else:
        key = str(name).lower()
        if key not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {name!r}; choose one of {sorted(OPTIMIZERS)}")
        cls = OPTIMIZERS[key]
    if cls is torch.optim.SGD:
        options.setdefault("momentum", 0.9)
    return cls(params, lr=lr, weight_decay=weight_decay, **options)
