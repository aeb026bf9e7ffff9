"""Per-epoch metrics rows, written to ``OUT/metrics.parquet`` with pyarrow (atomically)."""
from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq


def _plain(v: Any) -> Any:
    if hasattr(v, "item") and callable(v.item):  # numpy / torch scalars
        v = v.item()
    return v


class MetricsLog:
    """Rows of metrics (one dict per epoch); :meth:`write` rewrites the Parquet file atomically
    (temp file in the same folder, then ``os.replace``), so a reader never sees half a file."""

    def __init__(self, path: str | os.PathLike | None, rows: list[dict] | None = None):
        self.path = Path(path) if path is not None else None
        self.rows: list[dict] = [dict(r) for r in (rows or [])]

    def append(self, row: dict) -> None:
        self.rows.append({k: _plain(v) for k, v in row.items()})

    def table(self) -> pa.Table:
        """All rows as a pyarrow Table (columns = union of keys; missing values null)."""
        cols: list[str] = []
        for r in self.rows:
            cols += [k for k in r if k not in cols]
        data = {c: [r.get(c) for r in self.rows] for c in cols}
        return pa.table(data)

    def write(self) -> None:
        if self.path is None or not self.rows:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".metrics-", suffix=".parquet.tmp", dir=self.path.parent)
        os.close(fd)
        try:
            pq.write_table(self.table(), tmp)
            os.replace(tmp, self.path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """Rows of a metrics Parquet file (a file path or a run folder)."""
    from .storage import RunStorage, is_uri
    if is_uri(path):   # a run folder on storage (s3://..., gs://...)
        import io
        loc = str(path).rstrip("/")
        loc = loc[:-len("/metrics.parquet")] if loc.endswith("/metrics.parquet") else loc
        return pq.read_table(io.BytesIO(RunStorage(loc).read_bytes("metrics.parquet"))).to_pylist()
    p = Path(path)
    if p.is_dir():
        p = p / "metrics.parquet"
    return pq.read_table(p).to_pylist()


_PERCENT = ("acc", "map", "map50", "map75")


def _fmt_metric(name: str, x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return " n/a"
    return f"{100 * x:5.1f}%" if name in _PERCENT else f"{x:.4g}"


def metric_names(row: dict) -> list[str]:
    """The task metrics of a row: ``train_<name>`` / ``test_<name>`` keys other than loss."""
    names = []
    for k in row:
        for prefix in ("train_", "test_"):
            if k.startswith(prefix) and k != prefix + "loss":
                n = k[len(prefix):]
                if n not in names and n != "batches":
                    names.append(n)
    return names


def format_row(row: dict, epochs: int | None = None) -> str:
    """One summary line for an epoch row (loss and the task's metrics, train and test)."""
    ep = f"{row['epoch'] + 1}" + (f"/{epochs}" if epochs else "")
    peaks = " ".join(f"{k[len('peak_bytes_'):]}={_size(v)}" for k, v in row.items()
                     if k.startswith("peak_bytes_") and v is not None)
    names = metric_names(row)

    def part(prefix):
        loss = row.get(f"{prefix}_loss", math.nan)
        out = f"{prefix} loss {loss:.4f}"
        for n in names:
            out += f" {n} {_fmt_metric(n, row.get(f'{prefix}_{n}'))}"
        return out

    s = f"epoch {ep}  {part('train')}  {part('test')}  {row['sec_per_step']:.3f} s/step"
    if peaks:
        s += f"  peak {peaks}"
    if row.get("recomputed_steps"):
        s += f"  recomputed {row['recomputed_steps']}"
    if row.get("skipped_batches"):
        s += f"  skipped {row['skipped_batches']} non-finite batches"
    return s


def _size(n) -> str:
    from ..hardware.units import format_size
    return format_size(n)
