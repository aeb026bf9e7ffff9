"""Sweeps: a Ray Tune grid over any config keys (sequence length x strategy x model size ...),
each trial a short training run of a base config, recorded as one row of a Parquet table.

A sweep file (``configs/seqlen_sweep.yaml``)::

    base: shd_rsnn.yaml              # the config every trial starts from (relative to this file)
    set: {trainer.epochs: 1}         # dotted overrides for every trial (like --set)
    grid: {data.T: [100, 400], strategy: [bptt, checkpoint]}   # every combination is a trial
    x: data.T                        # the x axis of the plots
    out: runs/seqlen_sweep           # results: sweep.parquet, memory_vs_T.png, time_vs_T.png

Trials over their memory budget are recorded with ``status: over_budget`` (and failures with
``status: error``), never dropped.
"""
from __future__ import annotations

import itertools
import math
import os
import resource
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .config import ConfigError, load_config, read_yaml

SPEC_KEYS = ("base", "set", "grid", "x", "out", "max_concurrent", "cpus_per_trial")


@dataclass
class SweepSpec:
    """A parsed sweep file: ``base`` config path, fixed ``set`` overrides, ``grid`` of values."""

    base: Path
    grid: dict[str, list]
    set: dict[str, Any] = field(default_factory=dict)
    x: str = "data.T"
    out: Path = Path("runs/sweep")
    max_concurrent: int = 1          # 1: trials do not share cores, so timings stay honest
    cpus_per_trial: float = 1.0

    def trials(self) -> list[dict[str, Any]]:
        """Every combination of the grid values, as ``{key: value}`` (grid order)."""
        keys = list(self.grid)
        return [dict(zip(keys, combo)) for combo in itertools.product(*self.grid.values())]

    def overrides(self, params: dict[str, Any]) -> list[str]:
        """``KEY=VALUE`` overrides of one trial (fixed ``set`` first, then its grid values)."""
        items = list(self.set.items()) + list(params.items())
        return [f"{k}={yaml.safe_dump(v, default_flow_style=True).strip().removesuffix('...').strip()}"
                for k, v in items]


def load_sweep(path: str | Path, overrides: list[str] | None = None) -> SweepSpec:
    """Read a sweep file; ``overrides`` (``KEY=VALUE``) are added to its ``set``.

    Every trial's config is validated here, so a grid key that is not in the config schema
    (or a bad value) is a one-line :class:`ConfigError` before anything starts.
    """
    p = Path(path)
    raw = read_yaml(p)
    for k in raw:
        if k not in SPEC_KEYS:
            raise ConfigError(f"sweep file '{path}': unknown key '{k}' (valid: {', '.join(SPEC_KEYS)})")
    if "base" not in raw:
        raise ConfigError(f"sweep file '{path}': 'base' is missing; name the config every trial "
                          f"starts from, e.g. 'base: shd_rsnn.yaml'")
    grid = raw.get("grid") or {}
    if not isinstance(grid, dict) or not grid:
        raise ConfigError(f"sweep file '{path}': 'grid' must map config keys to lists of values, "
                          f"e.g. 'grid: {{data.T: [100, 200]}}'")
    grid = {str(k): (v if isinstance(v, list) else [v]) for k, v in grid.items()}
    fixed = dict(raw.get("set") or {})
    for item in overrides or []:
        k, _, v = item.partition("=")
        fixed[k.strip()] = yaml.safe_load(v)
    base = Path(raw["base"])
    if not base.is_absolute():
        base = (p.parent / base) if (p.parent / base).exists() else base
    spec = SweepSpec(base=base.resolve(), grid=grid, set=fixed, x=str(raw.get("x", "data.T")),
                     out=Path(raw.get("out", f"runs/{p.stem}")),
                     max_concurrent=int(raw.get("max_concurrent", 1)),
                     cpus_per_trial=float(raw.get("cpus_per_trial", 1)))
    if spec.x not in grid:
        raise ConfigError(f"sweep file '{path}': x axis '{spec.x}' is not a grid key "
                          f"({', '.join(grid)}); set 'x:' to one of them")
    for params in spec.trials():
        try:
            load_config(spec.base, spec.overrides(params))
        except ConfigError as e:
            bad = next((k for k in params if f"'{k}" in str(e) or str(e).startswith(k)), None)
            where = f"sweep grid key '{bad}'" if bad else f"sweep trial {params}"
            raise ConfigError(f"{where}: {e}") from None
    return spec


def _flatten_row(params: dict, metrics: dict) -> dict:
    return {**params, **metrics}


def run_trial(spec: SweepSpec, params: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """Train one trial in this process and return its metrics row (never raises for a
    trial that fails: the row says ``status`` and ``error``)."""
    import torch

    from ..strategies import BudgetError
    from .build import build_trainer

    torch.set_num_threads(max(1, int(spec.cpus_per_trial)))
    cfg = load_config(spec.base, spec.overrides(params) + ["trainer.progress=false"])
    T = int(cfg.data.T)
    row: dict[str, Any] = {"status": "ok", "error": "", "T": T}
    try:
        trainer = build_trainer(cfg, out_dir=out_dir, verbose=False)
        last = trainer.fit()
        sps = float(last.get("sec_per_step", math.nan))
        row.update(sec_per_step=sps, sec_per_sim_step=sps / T, loss=float(last.get("train_loss", math.nan)),
                   acc=float(last.get("train_acc", math.nan)),
                   test_acc=float(last.get("test_acc", math.nan)),
                   recomputed_steps=float(last.get("recomputed_steps", math.nan)),
                   bytes_moved=float(last.get("bytes_moved", math.nan)))
        for k, v in last.items():
            if k.startswith("peak_bytes_") or (k.startswith(("train_", "test_"))
                                               and isinstance(v, (int, float))):
                row[k] = float(v)
    except BudgetError as e:
        row.update(status="over_budget", error=" ".join(str(e).split()))
    except Exception as e:  # recorded as a failed trial, the sweep goes on
        row.update(status="error", error=f"{type(e).__name__}: {' '.join(str(e).split())}"[:500])
    row["peak_rss_bytes"] = float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return row


def _tune_trial(config: dict) -> None:
    """Ray Tune function trainable: one trial, one report."""
    from ray import tune

    os.chdir(config["cwd"])  # relative paths of the config (data cache) as on the driver
    spec: SweepSpec = config["spec"]
    params = {k: config[k] for k in spec.grid}
    name = "_".join(f"{k.split('.')[-1]}={v}" for k, v in params.items())
    tune.report(run_trial(spec, params, spec.out / "trials" / name))


def run_sweep(spec: SweepSpec, address: str | None = None) -> list[dict[str, Any]]:
    """Run every trial on Ray Tune (embedded local Ray unless ``address``), write
    ``out/sweep.parquet`` and the plots; returns the rows in grid order."""
    from ray import tune

    from ..trainer.ray_session import ray_session
    from .sweep_report import plot_sweep, write_table

    spec.out = spec.out.resolve()
    spec.out.mkdir(parents=True, exist_ok=True)
    space = {k: tune.grid_search(v) for k, v in spec.grid.items()}
    space.update(spec=spec, cwd=os.getcwd())
    with ray_session(address):
        tuner = tune.Tuner(
            tune.with_resources(_tune_trial, {"cpu": spec.cpus_per_trial}),
            param_space=space,
            tune_config=tune.TuneConfig(max_concurrent_trials=spec.max_concurrent,
                                        reuse_actors=False),
            run_config=tune.RunConfig(name="tune", storage_path=str(spec.out), verbose=0))
        results = tuner.fit()
        found = {}
        for r in results:
            params = {k: r.config[k] for k in spec.grid}
            metrics = {k: v for k, v in (r.metrics or {}).items() if k in _ROW_KEYS
                       or k.startswith(("peak_bytes_", "train_", "test_"))}
            if r.error is not None and not metrics:
                metrics = {"status": "error", "error": str(r.error).splitlines()[0][:500]}
            found[tuple(map(str, params.values()))] = _flatten_row(params, metrics)
    rows = [found.get(tuple(map(str, p.values())), {**p, "status": "lost"}) for p in spec.trials()]
    write_table(rows, spec.out / "sweep.parquet")
    plot_sweep(spec.out, x=spec.x)
    return rows


_ROW_KEYS = {"status", "error", "T", "sec_per_step", "sec_per_sim_step", "loss", "acc", "test_acc",
             "recomputed_steps", "bytes_moved", "peak_rss_bytes"}
