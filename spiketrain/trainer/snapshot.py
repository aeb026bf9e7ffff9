"""Snapshots: the saved training state used to resume a run.

A snapshot holds weights, optimizer state, epoch, global step, RNG states (torch, numpy,
python, CUDA) and the data loader's state. It is written atomically (temp file in the same
folder, then ``os.replace``) and read back with ``torch.load(..., weights_only=True)``, so
everything in it is tensors and plain Python types.
"""
from __future__ import annotations

import os
import pickle
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..models.base import unwrap

SNAPSHOT_NAME = "snapshot.pt"


def capture_rng() -> dict[str, Any]:
    """RNG states of torch, numpy and python ``random`` as tensors / plain types."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    out = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": str(np_state[0]), "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]),
                  "cached_gaussian": float(np_state[4])},
        "python": {"version": py_state[0], "state": torch.tensor(py_state[1], dtype=torch.int64),
                   "gauss_next": py_state[2]},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng`."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["state"].tolist()), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _plain(obj: Any) -> Any:
    """Make loader/extra states loadable with weights_only: numpy -> tensors / Python scalars."""
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj.copy())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain(v) for v in obj)
    return obj


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temp file next to ``path``, fsync, then ``os.replace`` onto it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def remove_stale_temp_files(run_dir: str | os.PathLike) -> list[Path]:
    """Delete temp files an interrupted write left in ``run_dir`` (``.snapshot.pt-*.tmp``,
    ``.metrics-*.parquet.tmp``); returns what was removed. Call only while no other process
    writes to the folder (a run folder belongs to one run)."""
    d = Path(run_dir)
    removed = []
    if not d.is_dir():
        return removed
    for pattern in (f".{SNAPSHOT_NAME}-*.tmp", ".metrics-*.parquet.tmp"):
        for p in d.glob(pattern):
            try:
                p.unlink()
                removed.append(p)
            except FileNotFoundError:
                pass
    return removed


class SnapshotError(ValueError):
    """A snapshot file that cannot be read or does not fit the model; one line naming it."""


def snapshot_path(run_dir: str | os.PathLike) -> Path:
    """Where a run folder keeps its latest snapshot (a file path is returned as is)."""
    p = Path(run_dir)
    return p if p.suffix == ".pt" else p / SNAPSHOT_NAME


def save_snapshot(path: str | os.PathLike, model, optimizer=None, *, epoch: int, global_step: int,
                  epoch_done: bool = True, loader_state: Any = None, extra: dict | None = None) -> Path:
    """Write a snapshot atomically to ``path`` (a ``.pt`` file or a run folder).

    ``epoch`` is the epoch being trained; ``epoch_done`` tells whether it finished (resume
    then starts at ``epoch + 1``) or the snapshot was taken mid-epoch.
    """
    obj = {
        "format": 1,
        "model": unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "epoch": int(epoch),
        "epoch_done": bool(epoch_done),
        "global_step": int(global_step),
        "rng": capture_rng(),
        "loader": _plain(loader_state),
        "extra": _plain(extra or {}),
    }
    return atomic_torch_save(obj, snapshot_path(path))


def load_snapshot(path: str | os.PathLike, model=None, optimizer=None, *, restore_rng_state: bool = True,
                  map_location: Any = "cpu") -> dict[str, Any]:
    """Read a snapshot (``weights_only=True``) and restore model, optimizer and RNG states.

    Returns the whole snapshot dict (``epoch``, ``epoch_done``, ``global_step``, ``loader``,
    ``extra``) for the caller to restore the rest.
    """
    p = snapshot_path(_local(path))
    if not p.exists():
        raise FileNotFoundError(f"no snapshot at {p}; resume needs a run folder that has "
                                f"{SNAPSHOT_NAME} (written at the end of each epoch)")
    snap = read_snapshot(p, map_location=map_location)
    if model is not None:
        try:
            unwrap(model).load_state_dict(snap["model"])
        except (RuntimeError, KeyError, TypeError, ValueError) as e:
            raise SnapshotError(f"{p}: its weights do not fit this model "
                                f"({_first_line(e)}); resume with the model options the run "
                                f"was started with (see config.yaml next to it)") from None
    if optimizer is not None and snap.get("optimizer") is not None:
        try:
            optimizer.load_state_dict(snap["optimizer"])
        except (RuntimeError, KeyError, TypeError, ValueError, IndexError) as e:
            raise SnapshotError(f"{p}: its optimizer state does not fit this optimizer "
                                f"({type(e).__name__}: {_first_line(e)}); resume with the "
                                f"optimizer the run was started with") from None
    if restore_rng_state:
        try:
            restore_rng(snap["rng"])
        except (RuntimeError, KeyError, TypeError, ValueError) as e:
            raise SnapshotError(f"{p}: damaged RNG state ({_first_line(e)})") from None
    return snap


_REQUIRED = {"model": dict, "epoch": int, "epoch_done": bool, "global_step": int, "rng": dict}


def read_snapshot(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """The snapshot dict in ``path`` (``weights_only=True``), its fields checked; a missing,
    truncated, empty or foreign file raises :class:`SnapshotError` (or FileNotFoundError) with
    one line naming the path."""
    p = snapshot_path(_local(path))
    if not p.is_file():
        what = "is a folder, not a snapshot file" if p.exists() else "does not exist"
        raise FileNotFoundError(f"no snapshot at {p} ({what}); resume needs a run folder that has "
                                f"{SNAPSHOT_NAME} (written at the end of each epoch)")
    try:
        snap = torch.load(p, map_location=map_location, weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError, ValueError, KeyError,
            TypeError, AttributeError, IndexError, UnicodeDecodeError, MemoryError) as e:
        size = p.stat().st_size if p.exists() else 0
        raise SnapshotError(f"{p}: not a readable snapshot ({size} bytes; "
                            f"{type(e).__name__}: {_first_line(e)}); it is damaged or not written "
                            f"by spiketrain: start a new run or restore the file") from None
    if not isinstance(snap, dict):
        raise SnapshotError(f"{p}: not a spiketrain snapshot (holds a {type(snap).__name__})")
    for key, tp in _REQUIRED.items():
        if not isinstance(snap.get(key), tp):
            raise SnapshotError(f"{p}: not a spiketrain snapshot ('{key}' missing or not a "
                                f"{tp.__name__})")
    return snap


def _local(path: str | os.PathLike) -> str | os.PathLike:
    """A snapshot on a storage URI (``s3://.../run`` or ``.../snapshot.pt``) fetched into the
    run's local stage folder; a local path as is."""
    from .storage import is_uri, localize_file
    return localize_file(path, SNAPSHOT_NAME) if is_uri(path) else path


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return " ".join(lines[0].split())[:300] if lines else type(e).__name__
