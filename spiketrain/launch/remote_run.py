"""``--out`` / ``--resume`` / ``trainer.out_dir`` given as a storage URI (``s3://...``).

The run is trained into the URI's local stage folder (``spiketrain.trainer.storage.stage_dir``)
with the ordinary run-folder rules, and its files are copied to the URI as they are written.
:func:`localize` turns the URI arguments of ``spiketrain train`` into stage folders (fetching
the run to resume) and returns the URI the run must be published to.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from ..trainer.storage import (RUN_FILES, RunStorage, StorageError, display, fetch_run, is_uri,
                               stage_dir)
from .checks import ConfigError


def _store(uri: str, what: str) -> RunStorage:
    try:
        return RunStorage(uri)
    except StorageError as e:
        raise ConfigError(f"{what} {e}") from None


def localize(args: argparse.Namespace, cfg_out_dir: str | None = None) -> str | None:
    """Rewrite ``args.out`` / ``args.resume`` given as URIs to local stage folders.

    Returns the URI the run publishes to: ``--out URI``, else ``--resume URI`` (a resumed run
    writes where it was, unless ``--out`` is given), else a URI ``trainer.out_dir``; None for
    a purely local run. A URI that already holds a run is refused as a local folder would be
    (unless ``--resume`` it or ``--overwrite``). Nothing is written to the URI here.
    """
    resume_uri = args.resume if is_uri(getattr(args, "resume", None)) else None
    out_uri = args.out if is_uri(getattr(args, "out", None)) else None
    if out_uri is None and not getattr(args, "out", None):
        if resume_uri is not None:
            out_uri = resume_uri
        elif is_uri(cfg_out_dir):
            out_uri = str(cfg_out_dir)
    same = resume_uri is not None and out_uri is not None and \
        display(resume_uri).rstrip("/") == display(out_uri).rstrip("/")
    if resume_uri is not None:
        stage = stage_dir(resume_uri)
        _clear(stage)
        try:
            fetch_run(resume_uri, stage)
        except FileNotFoundError as e:
            raise ConfigError(f"--resume {e}; pass the run folder or URI of an earlier "
                              f"'spiketrain train'") from None
        except StorageError as e:
            raise ConfigError(f"--resume {e}") from None
        args.resume = str(stage)
    # workers on other nodes read the snapshot from the URI itself, not this machine's stage
    args.resume_uri = resume_uri
    if out_uri is not None:
        store = _store(out_uri, "--out")
        try:
            present = [n for n in RUN_FILES if store.exists(n)]
        except StorageError as e:
            raise ConfigError(f"--out {e}") from None
        if present and not same and not getattr(args, "overwrite", False):
            raise ConfigError(f"--out {display(out_uri)} already holds a run "
                              f"({', '.join(present)}); pass --resume {display(out_uri)} to "
                              f"continue it, --overwrite to replace it, or another --out")
        if present and getattr(args, "overwrite", False):
            for n in present:
                store.delete(n)
        stage = stage_dir(out_uri)
        if not same:
            _clear(stage)
            args.out = str(stage)
        else:
            args.out = None   # resume writes into its own (stage) folder
    return out_uri


def _clear(stage: Path) -> None:
    """Empty a stage folder: the URI, not the stage, is the run's record."""
    if stage.exists():
        shutil.rmtree(stage)


def publish(out_uri: str | None, local_dir: str | Path, names=("config.yaml",)) -> None:
    """Copy run files from the local (stage) folder to ``out_uri``."""
    if not out_uri:
        return
    store = RunStorage(out_uri)
    for n in names:
        p = Path(local_dir) / n
        if p.is_file():
            store.upload(p, n)
