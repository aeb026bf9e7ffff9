"""Reports of training runs (not sweeps): the per-epoch table and learning curves.

``spiketrain report RUN [RUN ...]`` on run folders (local paths or storage URIs such as
``s3://bucket/runs/exp1``) prints each run's ``metrics.parquet`` as a table and draws:

* ``loss.png``: train (solid) and test (dashed) loss per epoch;
* ``<metric>.png``: each task metric (accuracy, mAP, perplexity, ...), train and test;
* ``memory.png``: peak bytes per memory tier per epoch (device solid, host dashed, disk dotted).

Several runs overlay their curves, one colour per run. Plots go to ``--plots DIR`` (default:
the run folder of a single local run, else ``report-<time>`` here).
"""
from __future__ import annotations

import datetime as _dt
import math
import os
from pathlib import Path
from typing import Any, Sequence

from ..trainer.metrics import metric_names
from ..trainer.storage import RunStorage, display, is_uri

TIER_STYLE = {"device": "-", "host": "--", "disk": ":"}
METRICS_NAME = "metrics.parquet"


def is_training_run(location: str | os.PathLike) -> bool:
    """Whether ``location`` (path or URI) holds a training run's ``metrics.parquet``."""
    try:
        return RunStorage(location).exists(METRICS_NAME)
    except OSError:
        return False


def read_run(location: str | os.PathLike) -> list[dict[str, Any]]:
    """The per-epoch rows of the run at ``location`` (a run folder, its metrics file, or a URI)."""
    import io

    import pyarrow.parquet as pq

    loc = str(location)
    name = METRICS_NAME
    if display(loc).endswith(".parquet"):
        base, _, query = loc.partition("?")
        loc, name = base.rsplit("/", 1)[0] + (f"?{query}" if query else ""), base.rsplit("/", 1)[1]
    store = RunStorage(loc)
    if not store.exists(name):
        raise FileNotFoundError(f"{store.uri(name)} does not exist: {display(loc)} is not a "
                                f"training run folder (no {name})")
    return pq.read_table(io.BytesIO(store.read_bytes(name))).to_pylist()


def _num(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _cell(key: str, v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if key.startswith("peak_bytes_"):
        from ..hardware.units import format_size
        return format_size(int(v))
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def table_columns(rows: Sequence[dict]) -> list[str]:
    """Columns of the per-epoch table: epoch, step, loss and task metrics (train then test),
    time, learning rate and memory per tier, in that order, only those present."""
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    names = metric_names({k: None for k in keys})
    cols = ["epoch", "global_step", "train_loss"] + [f"train_{n}" for n in names] + \
        ["test_loss"] + [f"test_{n}" for n in names] + \
        ["sec_per_step", "epoch_seconds", "lr"] + [k for k in keys if k.startswith("peak_bytes_")]
    return [c for c in cols if c in keys]


def format_run_table(rows: Sequence[dict], title: str = "") -> str:
    """The per-epoch table of one run as aligned text (epochs counted from 1)."""
    cols = table_columns(rows)
    head = [c.replace("peak_bytes_", "peak_") for c in cols]
    body = [[str(int(r["epoch"]) + 1) if c == "epoch" and r.get(c) is not None
             else _cell(c, r.get(c)) for c in cols] for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h)
              for i, h in enumerate(head)]
    lines = ([title] if title else []) + ["  ".join(h.rjust(w) for h, w in zip(head, widths))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(b, widths)) for b in body]
    return "\n".join(lines)


def _label(locations: Sequence[str]) -> list[str]:
    """Short distinct labels: the last path component, or more where they collide."""
    parts = [display(str(loc)).rstrip("/").split("/") for loc in locations]
    for depth in range(1, max(len(p) for p in parts) + 1):
        labels = ["/".join(p[-depth:]) for p in parts]
        if len(set(labels)) == len(labels):
            return labels
    return [display(str(loc)) for loc in locations]


def plot_runs(runs: dict[str, list[dict]], out_dir: str | os.PathLike) -> list[Path]:
    """Draw ``loss.png``, one ``<metric>.png`` per task metric and ``memory.png`` (if any
    tier was measured) for ``runs`` (``{label: rows}``) into ``out_dir``; returns the paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    from .sweep_plots import bytes_unit

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    colour = {label: f"C{i % 10}" for i, label in enumerate(runs)}
    keys: list[str] = []
    for rows in runs.values():
        for r in rows:
            keys += [k for k in r if k not in keys]
    names = ["loss"] + metric_names({k: None for k in keys})
    written = []
    for name in names:
        fig, ax = plt.subplots(figsize=(6.4, 4.4))
        drawn = False
        for label, rows in runs.items():
            for split, style in (("train", "-"), ("test", "--")):
                pts = [(int(r["epoch"]) + 1, _num(r.get(f"{split}_{name}"))) for r in rows]
                pts = [(x, y) for x, y in pts if not math.isnan(y)]
                if pts:
                    xs, ys = zip(*pts)
                    ax.plot(xs, ys, style, marker="o", color=colour[label])
                    drawn = True
        if not drawn:
            plt.close(fig)
            continue
        handles = [Line2D([], [], color=colour[k], marker="o", label=k) for k in runs]
        handles += [Line2D([], [], color="0.3", linestyle=s, label=n)
                    for n, s in (("train", "-"), ("test", "--"))]
        _finish(ax, name, f"{name} per epoch", handles)
        written.append(out / f"{name}.png")
        fig.savefig(written[-1], dpi=100)
        plt.close(fig)
    tiers = [k[len("peak_bytes_"):] for k in keys if k.startswith("peak_bytes_")]
    values = [_num(r.get(f"peak_bytes_{t}")) for rows in runs.values() for r in rows for t in tiers]
    values = [v for v in values if not math.isnan(v)]
    if values:
        div, unit = bytes_unit(max(values))
        fig, ax = plt.subplots(figsize=(6.4, 4.4))
        for label, rows in runs.items():
            for t in tiers:
                pts = [(int(r["epoch"]) + 1, _num(r.get(f"peak_bytes_{t}"))) for r in rows]
                pts = [(x, y / div) for x, y in pts if not math.isnan(y)]
                if pts:
                    xs, ys = zip(*pts)
                    ax.plot(xs, ys, TIER_STYLE.get(t, "-."), marker="o", color=colour[label])
        handles = [Line2D([], [], color=colour[k], marker="o", label=k) for k in runs]
        handles += [Line2D([], [], color="0.3", linestyle=TIER_STYLE.get(t, "-."), label=f"[{t}]")
                    for t in tiers]
        _finish(ax, f"peak memory ({unit})", "peak memory per tier per epoch", handles)
        written.append(out / "memory.png")
        fig.savefig(written[-1], dpi=100)
        plt.close(fig)
    return written


def _finish(ax, ylabel: str, title: str, handles) -> None:
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(True, alpha=0.3)
    ax.legend(handles=handles, fontsize=8)
    ax.figure.tight_layout()


def default_plot_dir(locations: Sequence[str]) -> Path:
    """Where plots go without ``--plots``: a single local run's own folder, else
    ``report-<time>`` in the current folder (a URI is never written to by a report)."""
    if len(locations) == 1 and not is_uri(locations[0]):
        p = Path(locations[0])
        return p.parent if p.suffix == ".parquet" else p
    return Path(f"report-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}")


def report_runs(locations: Sequence[str], plots: str | os.PathLike | None = None,
                draw: bool = True) -> tuple[str, list[Path]]:
    """``(text, plot paths)`` of the training runs at ``locations`` (paths or URIs)."""
    labels = _label([str(x) for x in locations])
    runs = {label: read_run(loc) for label, loc in zip(labels, locations)}
    text = "\n\n".join(format_run_table(rows, f"{display(str(loc))} ({len(rows)} epochs)")
                       for loc, rows in zip(locations, runs.values()))
    paths = plot_runs(runs, plots or default_plot_dir([str(x) for x in locations])) if draw else []
    return text, paths
