"""Sweep plots in human units: ``memory_vs_T.png`` (peak memory per tier in KiB/MiB/GiB) and
``time_vs_T.png`` (milliseconds per training step), one colour per strategy (per combination
of the other grid keys, the same in both plots and for every tier) and one line style per
tier (device solid, host dashed, disk dotted)."""
from __future__ import annotations

from pathlib import Path

from .sweep_report import PLOTS, TIER_STYLE, _series, read_table

_UNITS = ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB"), (1, "B"))


def bytes_unit(max_bytes: float) -> tuple[float, str]:
    """``(divisor, name)`` of the largest binary unit not above ``max_bytes``."""
    for div, name in _UNITS:
        if max_bytes >= div:
            return float(div), name
    return 1.0, "B"


def plot_sweep(run_dir: str | Path, x: str = "data.T") -> list[Path]:
    """(Re)draw the two sweep plots next to ``run_dir/sweep.parquet``; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    run_dir = Path(run_dir)
    rows = read_table(run_dir)
    cols = list(rows[0]) if rows else []
    grid_cols = cols[:cols.index("status")] if "status" in cols else []
    group_keys = [k for k in grid_cols if k != x]
    label = lambda key: ", ".join(str(v) if k == "strategy" else f"{k}={v}"  # noqa: E731
                                  for k, v in zip(group_keys, key)) or "all"
    tiers = sorted({k[len("peak_bytes_"):] for r in rows for k in r if k.startswith("peak_bytes_")},
                   key=lambda t: (list(TIER_STYLE).index(t) if t in TIER_STYLE else 9, t))
    keys = list(dict.fromkeys(tuple(r.get(k) for k in group_keys) for r in rows))
    colour = {k: f"C{i % 10}" for i, k in enumerate(keys)}
    out = []
    series = {t: _series(rows, x, group_keys, f"peak_bytes_{t}") for t in tiers}
    top = max([v for s in series.values() for pts in s.values() for _, v in pts] or [1.0])
    div, unit = bytes_unit(top)
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for tier in tiers:
        for key, pts in series[tier].items():
            xs, ys = zip(*pts)
            ax.plot(xs, [y / div for y in ys], TIER_STYLE.get(tier, "-."), marker="o",
                    color=colour[key])
    handles = [Line2D([], [], color=colour[k], marker="o", label=label(k)) for k in keys
               if any(k in series[t] for t in tiers)]
    handles += [Line2D([], [], color="0.3", linestyle=TIER_STYLE.get(t, "-."), label=f"[{t}]")
                for t in tiers]
    _finish(ax, x, f"peak memory ({unit}), per tier", "memory vs sequence length", handles)
    out.append(run_dir / PLOTS[0])
    fig.savefig(out[-1], dpi=100)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    handles = []
    for key, pts in _series(rows, x, group_keys, "sec_per_step").items():
        xs, ys = zip(*pts)
        ax.plot(xs, [1000 * y for y in ys], "-", marker="o", color=colour[key])
        handles.append(Line2D([], [], color=colour[key], marker="o", label=label(key)))
    _finish(ax, x, "ms per training step", "time vs sequence length", handles)
    out.append(run_dir / PLOTS[1])
    fig.savefig(out[-1], dpi=100)
    plt.close(fig)
    return out


def _finish(ax, x, ylabel, title, handles):
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(x)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    if handles:
        ax.legend(handles=handles, fontsize=7)
    ax.figure.tight_layout()
