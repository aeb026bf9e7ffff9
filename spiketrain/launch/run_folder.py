"""Run folders: claimed exclusively, never silently reused, never left holding only a config.

* A new run gets ``runs/<stem>-<YYYYmmdd-HHMMSS-microseconds>-<4 hex>`` (unique even for two
  runs started in the same second), created with ``exist_ok=False``.
* ``--out DIR`` that already holds a run (``config.yaml``, ``snapshot.pt`` or
  ``metrics.parquet``) is refused unless ``--resume`` (continue it) or ``--overwrite``
  (replace it) is given. ``config.yaml`` is created with ``O_EXCL``: of two runs racing for one
  folder, one wins and the other is refused.
* Everything is validated before the folder is created; a run that fails before its first
  snapshot or metrics row (:meth:`RunFolder.abandon`) removes its ``config.yaml`` and the
  folder it created.
* On resume the new config is compared with the stored ``config.yaml`` before anything is
  written (:func:`check_resume_config`).
"""
from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path
from typing import Any

import yaml

from .checks import ConfigError

CONFIG_NAME = "config.yaml"
RUN_FILES = (CONFIG_NAME, "snapshot.pt", "metrics.parquet")
#: config keys a resume may change (applied and recorded); every other key is fixed by the run
MUTABLE = ("trainer.epochs", "trainer.lr", "trainer.clip_grad", "trainer.weight_decay",
           "trainer.workers", "trainer.snapshot_every", "trainer.progress", "trainer.threads",
           "trainer.on_nonfinite", "trainer.out_dir", "trainer.tensorboard", "trainer.deterministic", "hardware",
           "strategy", "data.cache_dir", "data.sparse")


def unique_run_dir(stem: str, root: str | os.PathLike = "runs") -> Path:
    """``root/<stem>-<YYYYmmdd-HHMMSS-microseconds>-<4 hex>`` (not created)."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    return Path(root) / f"{stem}-{stamp}-{os.urandom(2).hex()}"


def holds_run(d: str | os.PathLike) -> list[str]:
    """The run files (config, snapshot, metrics) present in folder ``d``."""
    d = Path(d)
    return [n for n in RUN_FILES if (d / n).exists()] if d.is_dir() else []


def check_writable_dir(path: str | os.PathLike, what: str) -> None:
    """Refuse (ConfigError) a ``path`` that is a file, or a folder (or its nearest existing
    parent) this process cannot write. Creates nothing."""
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise ConfigError(f"{what} {p}: is a file, not a folder; give a folder path")
    q = p
    while not q.exists():
        if q.parent == q:
            break
        q = q.parent
    if q.exists() and not q.is_dir():
        raise ConfigError(f"{what} {p}: {q} is a file, not a folder; give a folder path")
    if not os.access(q, os.W_OK | os.X_OK):
        raise ConfigError(f"{what} {p}: {q} is not writable; choose a folder you can write")


def resume_dir(arg: str | os.PathLike) -> Path:
    """The run folder of ``--resume ARG`` (a run folder, or the ``snapshot.pt`` in one)."""
    p = Path(arg).expanduser()
    if p.is_file() and p.suffix == ".pt":
        p = p.parent
    if not p.is_dir():
        raise ConfigError(f"--resume {arg}: no snapshot there (no such run folder); pass the folder of an earlier "
                          f"'spiketrain train' (it holds snapshot.pt)")
    if not (p / "snapshot.pt").is_file():
        raise ConfigError(f"--resume {arg}: no snapshot there ({p / 'snapshot.pt'} missing); pass "
                          f"the run folder of an earlier 'spiketrain train' that finished at least "
                          f"one epoch or snapshot")
    return p


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out or {prefix[:-1]: {}}
    return {prefix[:-1]: d}


def _mutable(key: str) -> bool:
    return any(key == m or key.startswith(m + ".") for m in MUTABLE)


def config_changes(old: dict, new: dict) -> tuple[dict, dict]:
    """``(fixed, allowed)``: ``{key: (old, new)}`` of the differing dotted keys, split into
    those a resume may not change and those it may (:data:`MUTABLE`)."""
    fo, fn = _flatten(old), _flatten(new)
    # a strategy given as a name or as {name: ...} is the same strategy
    fixed, allowed = {}, {}
    for k in list(dict.fromkeys(list(fo) + list(fn))):
        a, b = fo.get(k, "<unset>"), fn.get(k, "<unset>")
        if a != b:
            (allowed if _mutable(k) else fixed)[k] = (a, b)
    return fixed, allowed


def read_stored_config(run: Path) -> dict | None:
    """The ``config.yaml`` of run folder ``run`` as a dict (None when it has none)."""
    p = run / CONFIG_NAME
    if not p.exists():
        return None
    try:
        raw = yaml.safe_load(p.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"--resume {run}: cannot read {p} ({type(e).__name__}); the run's "
                          f"record is damaged: restore it or start a new run") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"--resume {run}: {p} is not a config mapping; restore it or start a "
                          f"new run")
    return raw


def check_resume_config(run: Path, new: dict) -> dict:
    """Compare the new config with the run's stored one before touching anything.

    Keys outside :data:`MUTABLE` (the model, the data, the task, the optimizer type, the
    batch size, the seed) are refused in one line listing each differing key; returns the
    allowed changes ``{key: (old, new)}``.
    """
    old = read_stored_config(run)
    if old is None:
        return {}
    fixed, allowed = config_changes(old, new)
    if fixed:
        shown = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in list(fixed.items())[:6])
        more = f" (and {len(fixed) - 6} more)" if len(fixed) > 6 else ""
        raise ConfigError(f"--resume {run}: cannot change {shown}{more}; these fix the model, "
                          f"data or optimizer state of the run: drop them (the run's config is "
                          f"{run / CONFIG_NAME}) or start a new run")
    return allowed


class RunFolder:
    """A claimed run folder; :meth:`abandon` undoes the claim if nothing was trained."""

    def __init__(self, path: Path, created: bool, resumed: bool):
        self.path, self.created, self.resumed = path, created, resumed

    def write_config(self, cfg: dict) -> None:
        """Write ``config.yaml``: exclusively for a new run, replacing it (atomically) on resume."""
        text = yaml.safe_dump(cfg, sort_keys=False)
        p = self.path / CONFIG_NAME
        try:
            if self.resumed:
                tmp = self.path / f".{CONFIG_NAME}.tmp"
                tmp.write_text(text)
                os.replace(tmp, p)
                return
            with open(p, "x") as f:
                f.write(text)
        except FileExistsError:
            raise ConfigError(f"--out {self.path}: another run claimed this folder just now; "
                              f"give another --out") from None
        except OSError as e:
            raise ConfigError(f"--out {self.path}: cannot write {p} ({e.strerror or e}); choose a "
                              f"writable folder") from None

    def abandon(self) -> None:
        """After a failure: a new run that has neither a snapshot nor metrics removes its
        ``config.yaml`` and, if this run created it and it is now empty, the folder."""
        if self.resumed or (self.path / "snapshot.pt").exists() \
                or (self.path / "metrics.parquet").exists():
            return
        try:
            (self.path / CONFIG_NAME).unlink(missing_ok=True)
            if self.created:
                self.path.rmdir()
        except OSError:
            pass


def claim(path: str | os.PathLike, *, overwrite: bool = False, resume: bool = False,
          unique: bool = False) -> RunFolder:
    """Create (or, with ``resume``, take over) run folder ``path``.

    ``unique``: ``path`` was generated by :func:`unique_run_dir`; it is created with
    ``exist_ok=False`` (a collision picks a new suffix). A folder holding a run is refused
    unless ``resume`` or ``overwrite``; ``overwrite`` deletes its run files first.
    """
    from ..trainer.snapshot import remove_stale_temp_files

    p = Path(path).expanduser()
    check_writable_dir(p, "--out")
    if resume:
        remove_stale_temp_files(p)
        return RunFolder(p, created=False, resumed=True)
    present = holds_run(p)
    if present and not overwrite:
        raise ConfigError(f"--out {p} already holds a run ({', '.join(present)}); pass --resume "
                          f"{p} to continue it, --overwrite to replace it, or another --out")
    created = False
    try:
        if unique:
            for _ in range(8):
                try:
                    p.mkdir(parents=True, exist_ok=False)
                    created = True
                    break
                except FileExistsError:
                    p = p.with_name(p.name[:-4] + os.urandom(2).hex())
            else:
                raise ConfigError(f"cannot create a unique run folder next to {p}")
        elif not p.exists():
            p.mkdir(parents=True, exist_ok=True)
            created = True
    except OSError as e:
        raise ConfigError(f"--out {p}: cannot create the folder ({e.strerror or e}); choose a "
                          f"writable path") from None
    if present and overwrite:
        for name in RUN_FILES:
            (p / name).unlink(missing_ok=True)
    remove_stale_temp_files(p)
    return RunFolder(p, created=created, resumed=False)
