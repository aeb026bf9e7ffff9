"""Time resolution as an experiment axis: train at each ``train_dt``, deploy zero-shot at each
``deploy_dt`` with each mapping method, record the test metrics in Parquet and draw a heat
map of accuracy (train dt x deploy dt, one panel per method).

A dt-sweep file (``configs/dt_sweep.yaml``)::

    base: shd_rsnn.yaml                  # the config every training run starts from
    set: {trainer.epochs: 3}             # dotted overrides for every run (like --set)
    train_dt: [0.005, 0.01, 0.02]        # seconds; data.dt, data.T (same duration) and
                                         # model.dt (ms) follow
    deploy_dt: [0.005, 0.01, 0.02]
    methods: [none, baseline, integral, expectation, euler]
    out: runs/dt_sweep                   # dt_sweep.parquet, dt_heatmap.png, one run per train dt

    python -m spiketrain.launch.dt_heatmap configs/dt_sweep.yaml
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

import yaml

from .config import ConfigError, load_config, read_yaml

KEYS = ("base", "set", "train_dt", "deploy_dt", "methods", "out")
TABLE, PLOT = "dt_sweep.parquet", "dt_heatmap.png"


def load_dt_sweep(path: str | Path) -> dict:
    """The parsed sweep file (paths resolved, values checked)."""
    from ..models.resolution import METHODS

    p = Path(path)
    raw = read_yaml(p)
    for k in raw:
        if k not in KEYS:
            raise ConfigError(f"dt sweep '{path}': unknown key '{k}' (valid: {', '.join(KEYS)})")
    for k in ("base", "train_dt", "deploy_dt"):
        if k not in raw:
            raise ConfigError(f"dt sweep '{path}': '{k}' is missing")
    base = Path(raw["base"])
    if not base.is_absolute() and (p.parent / base).exists():
        base = p.parent / base
    methods = list(raw.get("methods") or METHODS)
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise ConfigError(f"dt sweep '{path}': unknown method(s) {bad} (choose from "
                          f"{', '.join(METHODS)})")
    spec = {"base": base, "set": dict(raw.get("set") or {}),
            "train_dt": [float(v) for v in raw["train_dt"]],
            "deploy_dt": [float(v) for v in raw["deploy_dt"]], "methods": methods,
            "out": Path(raw.get("out", f"runs/{p.stem}"))}
    for dt in spec["train_dt"] + spec["deploy_dt"]:
        if not dt > 0:
            raise ConfigError(f"dt sweep '{path}': time steps must be positive, got {dt}")
    _config(spec, spec["train_dt"][0])  # a bad base or 'set' fails here, before any training
    return spec


def _overrides(spec: dict, dt: float, duration: float | None = None) -> list[str]:
    """Overrides for training at ``dt`` seconds (``data.T`` keeps the base duration)."""
    items = [f"{k}={yaml.safe_dump(v, default_flow_style=True).strip().removesuffix('...').strip()}"
             for k, v in spec["set"].items()]
    cfg0 = load_config(spec["base"], items)
    dur = duration or getattr(cfg0.data, "duration", None) or cfg0.data.T * cfg0.data.dt
    T = max(1, int(round(dur / dt)))
    extra = [f"data.dt={dt}", f"data.T={T}", f"model.dt={dt * 1000.0}"]
    if hasattr(cfg0.data, "duration") and getattr(cfg0.data, "duration") is None:
        extra.append(f"data.duration={dur}")
    return items + extra


def _config(spec: dict, dt: float):
    return load_config(spec["base"], _overrides(spec, dt) + ["trainer.progress=false"])


def run_dt_sweep(spec: dict) -> list[dict[str, Any]]:
    """Train at every train dt, evaluate every (deploy dt, method); write the table and plot."""
    from ..models.resolution import adapt
    from ..trainer import evaluate, make_loader
    from .build import build_data, build_trainer
    from .sweep_report import write_table

    out = Path(spec["out"])
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for tdt in spec["train_dt"]:
        cfg = _config(spec, tdt)
        run = out / f"train_dt={tdt * 1000:g}ms"
        trainer = build_trainer(cfg, out_dir=run, verbose=False)
        (run).mkdir(parents=True, exist_ok=True)
        (run / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        t0 = time.perf_counter()
        last = trainer.fit()
        train_s = time.perf_counter() - t0
        model = trainer.unwrapped_model
        model_dt = float(cfg.model.kwargs["dt"])
        for ddt in spec["deploy_dt"]:
            dcfg = _config(spec, ddt)
            _, test = build_data(dcfg)
            loader = make_loader(test, cfg.trainer.batch_size, shuffle=False)
            for method in spec["methods"]:
                row = {"train_dt_ms": tdt * 1000, "deploy_dt_ms": ddt * 1000, "method": method,
                       "train_steps": int(cfg.data.T), "deploy_steps": int(dcfg.data.T),
                       "sec_per_step": float(last.get("sec_per_step", math.nan)),
                       "train_seconds": train_s, "status": "ok", "error": ""}
                try:
                    mapped, _ = adapt(model, model_dt, model_dt * ddt / tdt, method)
                    ev = evaluate(mapped, loader, task=cfg.task.build())
                    row["test_loss"] = float(ev.loss)
                    row.update({f"test_{k}": float(v) for k, v in ev.metrics.compute().items()})
                except ValueError as e:  # e.g. euler to a much coarser step
                    row.update(status="error", error=" ".join(str(e).split())[:300])
                rows.append(row)
    write_table(rows, out / TABLE)
    plot_heatmap(rows, out / PLOT)
    return rows


def plot_heatmap(rows: list[dict[str, Any]], path: str | Path, metric: str = "test_acc") -> Path:
    """Accuracy heat maps: rows train dt, columns deploy dt (ms), one panel per method."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    methods = list(dict.fromkeys(r["method"] for r in rows))
    tr = sorted({r["train_dt_ms"] for r in rows})
    de = sorted({r["deploy_dt_ms"] for r in rows})
    fig, axes = plt.subplots(1, len(methods), figsize=(3.2 * len(methods) + 1, 3.2),
                             squeeze=False)
    for ax, m in zip(axes[0], methods):
        grid = np.full((len(tr), len(de)), np.nan)
        for r in rows:
            if r["method"] == m and isinstance(r.get(metric), float):
                grid[tr.index(r["train_dt_ms"]), de.index(r["deploy_dt_ms"])] = 100 * r[metric]
        im = ax.imshow(grid, vmin=0, vmax=100, cmap="viridis", origin="lower")
        for i in range(len(tr)):
            for j in range(len(de)):
                if not np.isnan(grid[i, j]):
                    ax.text(j, i, f"{grid[i, j]:.0f}", ha="center", va="center",
                            color="white" if grid[i, j] < 60 else "black", fontsize=9)
        ax.set_xticks(range(len(de)), [f"{v:g}" for v in de])
        ax.set_yticks(range(len(tr)), [f"{v:g}" for v in tr])
        ax.set_xlabel("deploy dt (ms)")
        ax.set_title(m)
    axes[0][0].set_ylabel("train dt (ms)")
    fig.colorbar(im, ax=axes[0].tolist(), label="test accuracy (%)", shrink=0.8)
    path = Path(path)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m spiketrain.launch.dt_heatmap",
                                description=__doc__.splitlines()[0])
    p.add_argument("sweep", help="dt sweep file, e.g. configs/dt_sweep.yaml")
    p.add_argument("--out", help="results folder (replaces the file's 'out')")
    args = p.parse_args(argv)
    spec = load_dt_sweep(args.sweep)
    if args.out:
        spec["out"] = Path(args.out)
    rows = run_dt_sweep(spec)
    for r in rows:
        acc = r.get("test_acc", math.nan)
        print(f"train {r['train_dt_ms']:g} ms -> deploy {r['deploy_dt_ms']:g} ms  "
              f"{r['method']:<9} acc {100 * acc:5.1f}%  {r['status']}")
    print(f"table: {Path(spec['out']) / TABLE}\nheat map: {Path(spec['out']) / PLOT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
