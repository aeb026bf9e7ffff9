"""Run folders on any storage ``pyarrow.fs`` reaches: a local or NFS path, ``s3://``, ``gs://``,
``hdfs://`` (and ``file://``).

A run folder given as a URI (``--out s3://bucket/runs/exp1``) is trained into a local *stage*
folder (:func:`stage_dir`) and every file the run writes there (``config.yaml``,
``metrics.parquet``, ``snapshot.pt``) is copied to the URI right after it is written
(:meth:`RunStorage.upload`), so a run on any node of a cluster leaves its results where every
node, and any later machine, can read them; ``report``, ``--resume`` and ``evaluate`` read them
back (:meth:`RunStorage.download`, :func:`fetch_run`).

Writes are atomic where the filesystem allows: a local path gets a temp file then
``os.replace``; an object store (S3, GCS) makes an object visible only when its upload
completes, so a reader sees the old object or the new one, never half of one. Credentials and
endpoints come from the usual places of each store (for S3: ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL`` for an S3-compatible server, or the query
string of the URI, e.g. ``s3://bucket/run?endpoint_override=http://host:9000``).
"""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path
from urllib.parse import urlparse

#: URI schemes treated as remote storage (anything else is a local path)
REMOTE_SCHEMES = ("s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss", "az")


def is_uri(location: str | os.PathLike | None) -> bool:
    """True for a remote storage URI (``s3://...``, ``gs://...``, ``hdfs://...``)."""
    if location is None or isinstance(location, Path):
        return False
    scheme = urlparse(str(location)).scheme.lower()
    return scheme in REMOTE_SCHEMES


def join(location: str | os.PathLike, *names: str) -> str:
    """``location/name/...`` for a URI (its query string kept at the end) or a local path."""
    if not is_uri(location):
        return str(Path(location).joinpath(*names))
    base, _, query = str(location).partition("?")
    out = base.rstrip("/") + "".join("/" + n.strip("/") for n in names)
    return out + (f"?{query}" if query else "")


def display(location: str | os.PathLike) -> str:
    """The location without its query string (which may hold an endpoint or options)."""
    return str(location).partition("?")[0]


class StorageError(OSError):
    """A storage location that cannot be reached, read or written; one line naming it."""


class RunStorage:
    """A run folder at ``location`` (local path or URI) on a ``pyarrow.fs`` filesystem.

    Names are paths relative to the folder (``"metrics.parquet"``, ``"ray/checkpoint_0"``).
    """

    def __init__(self, location: str | os.PathLike):
        import pyarrow.fs as pafs

        self.location = str(location)
        self.remote = is_uri(location)
        try:
            if self.remote:
                self.fs, self.root = pafs.FileSystem.from_uri(self.location)
            else:
                self.fs = pafs.LocalFileSystem()
                self.root = str(Path(location).expanduser().resolve())
        except Exception as e:  # bad URI, unknown scheme, missing credentials
            raise StorageError(f"{display(location)}: cannot open this storage "
                               f"({type(e).__name__}: {_line(e)})") from None
        self.root = self.root.rstrip("/")

    def __repr__(self) -> str:
        return f"RunStorage({display(self.location)!r})"

    def path(self, name: str = "") -> str:
        """The filesystem path of ``name`` inside the run folder."""
        return f"{self.root}/{name.strip('/')}" if name else self.root

    def uri(self, name: str = "") -> str:
        """The location of ``name`` as the user would write it (no query string)."""
        return display(join(self.location, name)) if name else display(self.location)

    # ---------------------------------------------------------------- queries
    def exists(self, name: str = "") -> bool:
        """Whether ``name`` (a file or folder; "" = the run folder itself) exists."""
        import pyarrow.fs as pafs

        try:
            return self.fs.get_file_info(self.path(name)).type != pafs.FileType.NotFound
        except Exception as e:
            raise StorageError(f"{self.uri(name)}: cannot reach ({_line(e)})") from None

    def list(self, prefix: str = "", recursive: bool = False) -> list[str]:
        """Names of the files under ``prefix`` (relative to the run folder), sorted."""
        import pyarrow.fs as pafs

        sel = pafs.FileSelector(self.path(prefix), allow_not_found=True, recursive=recursive)
        try:
            infos = self.fs.get_file_info(sel)
        except Exception as e:
            raise StorageError(f"{self.uri(prefix)}: cannot list ({_line(e)})") from None
        n = len(self.root) + 1
        return sorted(i.path[n:] for i in infos if i.type == pafs.FileType.File)

    # ---------------------------------------------------------------- bytes
    def write_bytes(self, name: str, data: bytes) -> str:
        """Write ``data`` to ``name`` atomically (see the module docstring); returns its URI."""
        target = self.path(name)
        try:
            if not self.remote:
                Path(target).parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(prefix=f".{Path(target).name}-", suffix=".tmp",
                                           dir=Path(target).parent)
                try:
                    with os.fdopen(fd, "wb") as f:
                        f.write(data)
                        f.flush()
                        os.fsync(f.fileno())
                    os.replace(tmp, target)
                except BaseException:
                    if os.path.exists(tmp):
                        os.unlink(tmp)
                    raise
            else:
                self._ensure_parent(target)
                with self.fs.open_output_stream(target) as f:
                    f.write(data)
        except StorageError:
            raise
        except Exception as e:
            raise StorageError(f"{self.uri(name)}: cannot write ({_line(e)})") from None
        return self.uri(name)

    def read_bytes(self, name: str) -> bytes:
        """The whole content of ``name``; FileNotFoundError naming the URI when absent."""
        if not self.exists(name):
            raise FileNotFoundError(f"{self.uri(name)} does not exist")
        try:
            with self.fs.open_input_stream(self.path(name)) as f:
                return f.read()
        except Exception as e:
            raise StorageError(f"{self.uri(name)}: cannot read ({_line(e)})") from None

    def delete(self, name: str) -> None:
        """Remove file ``name`` (nothing if absent)."""
        if self.exists(name):
            self.fs.delete_file(self.path(name))

    # ---------------------------------------------------------------- files
    def upload(self, local: str | os.PathLike, name: str | None = None) -> str:
        """Copy the local file ``local`` to ``name`` (default: its file name); returns the URI."""
        local = Path(local)
        return self.write_bytes(name or local.name, local.read_bytes())

    def download(self, name: str, local: str | os.PathLike) -> Path:
        """Copy ``name`` to the local file ``local`` (atomically); returns ``local``."""
        data = self.read_bytes(name)
        RunStorage(Path(local).parent).write_bytes(Path(local).name, data)
        return Path(local)

    def _ensure_parent(self, target: str) -> None:
        parent = target.rsplit("/", 1)[0]
        try:
            self.fs.create_dir(parent, recursive=True)
        except Exception:
            pass  # object stores without folders, or a bucket that exists but refuses creation


def stage_dir(location: str, root: str | os.PathLike | None = None) -> Path:
    """The local folder a run at URI ``location`` is staged in (not created):
    ``$SPIKETRAIN_STAGE_DIR`` (default ``~/.cache/spiketrain/stage``) ``/<name>-<8 hex>``, one
    per URI, the same on every call."""
    root = Path(root or os.environ.get("SPIKETRAIN_STAGE_DIR")
                or Path.home() / ".cache" / "spiketrain" / "stage")
    base = display(location)
    tail = re.sub(r"[^A-Za-z0-9._-]+", "_", base.rstrip("/").rsplit("/", 1)[-1])[:60] or "run"
    return root / f"{tail}-{hashlib.sha1(base.encode()).hexdigest()[:8]}"


RUN_FILES = ("config.yaml", "metrics.parquet", "snapshot.pt")


def fetch_run(location: str, into: str | os.PathLike | None = None,
              names: tuple[str, ...] = RUN_FILES) -> Path:
    """Copy the run files present at URI ``location`` into a local folder (default: its
    :func:`stage_dir`) and return that folder; a local ``location`` is returned as is.
    Raises FileNotFoundError when the URI holds none of them."""
    if not is_uri(location):
        return Path(location)
    store = RunStorage(location)
    dest = Path(into) if into is not None else stage_dir(location)
    got = [n for n in names if store.exists(n)]
    if not got:
        raise FileNotFoundError(f"{display(location)}: no run there (none of "
                                f"{', '.join(names)})")
    for n in got:
        store.download(n, dest / n)
    return dest


def localize_file(location: str | os.PathLike, name: str) -> Path:
    """A local path for file ``name`` of the run at ``location``: itself for a local path;
    for a URI (of the run folder or of the file) a copy fetched into the run's stage folder."""
    loc = str(location)
    if not is_uri(loc):
        p = Path(loc)
        return p if p.name == name or p.suffix == Path(name).suffix else p / name
    base, _, query = loc.partition("?")
    if base.rstrip("/").endswith("/" + name):
        base = base.rstrip("/")[: -len(name) - 1]
    run = base + (f"?{query}" if query else "")
    return RunStorage(run).download(name, stage_dir(run) / name)


def _line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return " ".join(lines[0].split())[:300] if lines else type(e).__name__
