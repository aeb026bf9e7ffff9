"""A trained run folder as the evaluate, adapt and export commands read it: its
``config.yaml`` (with ``--set`` overrides) and the weights of its ``snapshot.pt``."""
from __future__ import annotations

import re
from pathlib import Path

from ..config import ConfigError, apply_overrides, read_yaml, validate


def _register_neurons() -> None:
    """Make every neuron of spiketrain nameable in a config (``neuron: adlif``)."""
    from ...models.snn import adlif, learnable  # noqa: F401


def run_config(run_dir: str | Path, overrides: list[str] | None = None, *,
               keep_duration: bool = True):
    """``(Config, raw dict)`` of a run folder. With ``keep_duration``, a ``data.dt`` override
    without ``data.T`` rescales ``T`` so a sample still covers the same time."""
    _register_neurons()
    run = Path(run_dir)
    path = run / "config.yaml" if run.is_dir() else run
    if not path.is_file():
        raise ConfigError(f"{run_dir}: no config.yaml there; pass the run folder of a "
                          f"'spiketrain train' (or 'spiketrain adapt') run")
    raw = read_yaml(path)
    old = dict(raw.get("data") or {})
    raw = apply_overrides(raw, overrides)
    new = raw.get("data") or {}
    keys = {o.split("=", 1)[0].strip() for o in overrides or []}
    if keep_duration and "data.dt" in keys and "data.T" not in keys and "T" in old \
            and "dt" in old and new.get("dt"):
        new["T"] = max(1, int(round(old["T"] * float(old["dt"]) / float(new["dt"]))))
        if "duration" in old and old.get("duration") is None:
            new["duration"] = float(old["T"]) * float(old["dt"])
    return validate(raw, path), raw


def load_trained(run_dir: str | Path, cfg):
    """The model of ``cfg`` with the weights of ``run_dir``'s snapshot (eval mode)."""
    from ...trainer.snapshot import load_snapshot, snapshot_path
    from ..build import build_model

    if not snapshot_path(run_dir).exists():
        raise ConfigError(f"{run_dir}: no {snapshot_path(run_dir).name} there; the run has not "
                          f"finished an epoch")
    model = build_model(cfg)
    try:
        snap = load_snapshot(run_dir, model, restore_rng_state=False)
    except RuntimeError as e:
        raise ConfigError(f"{run_dir}: the snapshot does not fit the model of its config "
                          f"({' '.join(str(e).split())[:300]})") from None
    return model.eval(), snap


def parse_dt(text: str) -> float:
    """A step in seconds from ``"0.005"``, ``"5ms"``, ``"5 ms"``, ``"0.005s"``, ``"500us"``."""
    m = re.fullmatch(r"\s*([0-9.eE+-]+)\s*(ms|s|us)?\s*", str(text))
    if not m:
        raise ConfigError(f"--dt expects a step such as 0.005 (seconds) or 5ms, got {text!r}")
    value = float(m.group(1)) * {"s": 1.0, None: 1.0, "ms": 1e-3, "us": 1e-6}[m.group(2)]
    if not value > 0:
        raise ConfigError(f"--dt must be positive, got {text!r}")
    return value
