"""Sweep results: the Parquet table (one row per trial), its text form, and the log-log plots
``memory_vs_T.png`` (peak bytes per tier) and ``time_vs_T.png`` (seconds per step)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

TIER_STYLE = {"device": "-", "host": "--", "disk": ":"}
PLOTS = ("memory_vs_T.png", "time_vs_T.png")


def _column_type(values: list) -> str:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:  # nothing but missing values: numeric if any is a float NaN
        return "num" if any(isinstance(v, float) for v in values) else "str"
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
        return "num"
    return "str"


def write_table(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """Write ``rows`` as Parquet: numeric columns float64 (NaN where missing), others strings."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    data = {}
    for c in cols:
        vals = [r.get(c) for r in rows]
        if _column_type(vals) == "num":
            data[c] = pa.array([math.nan if v is None else float(v) for v in vals], pa.float64())
        else:
            data[c] = pa.array(["" if v is None else str(v) for v in vals], pa.string())
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(data), path)
    return path


def read_table(run_dir: str | Path) -> list[dict[str, Any]]:
    """Rows of ``run_dir/sweep.parquet`` (or of the Parquet file given)."""
    import pyarrow.parquet as pq

    p = Path(run_dir)
    p = p / "sweep.parquet" if p.is_dir() else p
    if not p.exists():
        raise FileNotFoundError(f"no sweep table at {p}; pass the 'out' folder of a "
                                f"'spiketrain sweep' run")
    return pq.read_table(p).to_pylist()


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
            return f"{v:.3g}"
        return f"{v:.4g}"
    return str(v)


def format_table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    """A fixed-width text table of ``rows`` (``error`` column left out; it is in the file)."""
    if not rows:
        return "(no trials)"
    cols = columns or [c for c in rows[0] if c != "error"]
    cells = [[_fmt(r.get(c)) for c in cols] for r in rows]
    w = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    line = lambda vals: "  ".join(v.rjust(w[i]) for i, v in enumerate(vals))  # noqa: E731
    return "\n".join([line(cols), line(["-" * n for n in w])] + [line(r) for r in cells])


def _series(rows, x: str, group_keys: list[str], y: str):
    groups: dict[tuple, list[tuple[float, float]]] = {}
    for r in rows:
        v, xv = r.get(y), r.get(x)
        if r.get("status") != "ok" or v is None or xv is None:
            continue
        if isinstance(v, float) and (math.isnan(v) or v <= 0):
            continue
        groups.setdefault(tuple(r.get(k) for k in group_keys), []).append((float(xv), float(v)))
    return {k: sorted(pts) for k, pts in groups.items()}


def plot_sweep(run_dir: str | Path, x: str = "data.T") -> list[Path]:
    """(Re)draw ``memory_vs_T.png`` and ``time_vs_T.png`` next to the table, in human units
    (KiB/MiB/GiB, ms per step), one colour per strategy and one line style per tier
    (:mod:`.sweep_plots`)."""
    from .sweep_plots import plot_sweep as _plot

    return _plot(run_dir, x)
