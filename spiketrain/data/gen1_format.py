"""Prophesee Gen1 automotive files: ``*_td.dat`` events and ``*_bbox.npy`` boxes.

Written from the published format description (Prophesee's dataset toolbox documents it).

``*_td.dat``
    Optional ASCII header lines, each starting with ``"% "`` (``% Height 240``,
    ``% Width 304``, ...). If there is a header, two bytes follow it: the event type (uint8,
    0 = Event2D) and the event size (uint8, 8). Headerless files are type 0, size 8. Then one
    8-byte little-endian record per event: ``t`` uint32 microseconds, and a uint32 word with
    ``x`` = bits 0-13, ``y`` = bits 14-27, ``p`` = bit 28 (1 = ON, 0 = OFF). Events are sorted
    by ``t``.

``*_bbox.npy``
    A structured array: ``t`` int64 µs, ``x``, ``y``, ``w``, ``h`` float32 (top-left corner,
    sensor pixels), ``class_id`` uint32, ``track_id`` uint32, ``class_confidence`` float32
    (40 bytes per box). Older files name ``t`` ``ts`` and the confidence ``confidence``;
    :func:`read_bbox` reads both spellings and returns the new one.

:class:`DatFile` memory-maps an event file and reads a time window by binary search over the
mapped timestamps, so a multi-GB recording is never loaded whole: reading a window touches
``O(log n)`` pages for the search plus the window's own events.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

#: the 40-byte box record of current files
BBOX_DTYPE = np.dtype({"names": ["t", "x", "y", "w", "h", "class_id", "track_id",
                                 "class_confidence"],
                       "formats": ["<i8", "<f4", "<f4", "<f4", "<f4", "<u4", "<u4", "<f4"],
                       "offsets": [0, 8, 12, 16, 20, 24, 28, 32], "itemsize": 40})
#: the box record of older files (``ts``, ``confidence``)
BBOX_DTYPE_LEGACY = np.dtype([("ts", "<u8"), ("x", "<f4"), ("y", "<f4"), ("w", "<f4"),
                              ("h", "<f4"), ("class_id", "u1"), ("confidence", "<f4"),
                              ("track_id", "<u4")])
#: one raw event record: microseconds and the packed x/y/p word
EVENT_DTYPE = np.dtype([("t", "<u4"), ("xyp", "<u4")])
GEN1_WIDTH, GEN1_HEIGHT = 304, 240
GEN1_CLASSES = ("car", "pedestrian")

_X_MASK, _Y_SHIFT, _Y_MASK, _P_SHIFT = (1 << 14) - 1, 14, (1 << 14) - 1, 28


@dataclass
class DatHeader:
    """What precedes the events of a ``.dat`` file."""

    data_offset: int                     # byte offset of the first event
    ev_type: int = 0
    ev_size: int = 8
    width: int | None = None
    height: int | None = None
    lines: list[str] = field(default_factory=list)   # header lines without the leading "% "


def pack_xyp(x, y, p) -> np.ndarray:
    """uint32 words with ``x`` in bits 0-13, ``y`` in bits 14-27, ``p`` in bit 28."""
    x, y, p = (np.asarray(a, dtype=np.int64) for a in (x, y, p))
    if x.size and (x.min() < 0 or x.max() > _X_MASK or y.min() < 0 or y.max() > _Y_MASK):
        raise ValueError("event coordinates must lie in [0, 16383] (14 bits)")
    if p.size and not np.isin(p, (0, 1)).all():
        raise ValueError("event polarities must be 0 or 1")
    return (x | (y << _Y_SHIFT) | (p << _P_SHIFT)).astype(np.uint32)


def unpack_xyp(word: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(x, y, p)`` (uint16, uint16, uint8) from packed uint32 words."""
    w = np.asarray(word, dtype=np.uint32)
    x = (w & _X_MASK).astype(np.uint16)
    y = ((w >> _Y_SHIFT) & _Y_MASK).astype(np.uint16)
    p = ((w >> _P_SHIFT) & 1).astype(np.uint8)
    return x, y, p


def write_dat(path: str | os.PathLike, t, x, y, p, *, header: bool = True,
              width: int = GEN1_WIDTH, height: int = GEN1_HEIGHT,
              extra_lines: tuple[str, ...] = ("Date 2026-01-01 00:00:00", "Version 2")) -> str:
    """Write events to a ``*_td.dat`` file (sorted by ``t`` here if they are not).

    ``t`` microseconds (< 2**32), ``x``, ``y`` pixels, ``p`` 0/1. With ``header=False`` the
    file is the bare event records (the older headerless layout). Written to a temporary file
    and renamed, so readers never see a partial file.
    """
    t = np.asarray(t, dtype=np.int64)
    if t.size and (t.min() < 0 or t.max() >= 2**32):
        raise ValueError("event times must lie in [0, 2**32) microseconds")
    rec = np.empty(t.size, dtype=EVENT_DTYPE)
    rec["t"] = t
    rec["xyp"] = pack_xyp(x, y, p)
    if t.size > 1 and (np.diff(t) < 0).any():
        rec = rec[np.argsort(t, kind="stable")]
    path = os.fspath(path)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            if header:
                lines = list(extra_lines) + [f"Height {int(height)}", f"Width {int(width)}"]
                f.write("".join(f"% {s}\n" for s in lines).encode("latin-1"))
                f.write(bytes([0, EVENT_DTYPE.itemsize]))
            rec.tofile(f)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def append_dat(path: str | os.PathLike, t, x, y, p) -> None:
    """Append events (sorted, none earlier than the file's last) to an existing ``.dat`` file:
    long recordings are written chunk by chunk without holding them in memory."""
    t = np.asarray(t, dtype=np.int64)
    if t.size and (t.min() < 0 or t.max() >= 2**32 or (np.diff(t) < 0).any()):
        raise ValueError("appended event times must be sorted and lie in [0, 2**32) us")
    rec = np.empty(t.size, dtype=EVENT_DTYPE)
    rec["t"], rec["xyp"] = t, pack_xyp(x, y, p)
    with open(path, "ab") as f:
        rec.tofile(f)


def read_dat_header(path: str | os.PathLike) -> DatHeader:
    """Parse the ``% `` header lines (if any) and the type/size bytes after them."""
    lines: list[str] = []
    width = height = None
    with open(path, "rb") as f:
        while True:
            start = f.tell()
            line = f.readline(4096)
            if not line.startswith(b"% ") or not line.endswith(b"\n"):
                f.seek(start)
                break
            text = line[2:].decode("latin-1").rstrip("\r\n")
            lines.append(text)
            words = text.split()
            if len(words) >= 2 and words[0] in ("Height", "Width"):
                try:
                    v = int(words[1])
                except ValueError:
                    v = None
                if words[0] == "Height":
                    height = v
                else:
                    width = v
        if lines:
            tb = f.read(2)
            if len(tb) < 2:
                raise ValueError(f"{os.fspath(path)!r}: header ends before the event type/size "
                                 "bytes")
            ev_type, ev_size = tb[0], tb[1]
        else:
            ev_type, ev_size = 0, EVENT_DTYPE.itemsize
        offset = f.tell()
    if ev_size != EVENT_DTYPE.itemsize:
        raise ValueError(f"{os.fspath(path)!r}: event size {ev_size} bytes; only the 8-byte "
                         "Event2D records of Gen1 files are supported")
    if ev_type != 0:
        raise ValueError(f"{os.fspath(path)!r}: event type {ev_type}; only Event2D (type 0) is "
                         "supported")
    return DatHeader(offset, ev_type, ev_size, width, height, lines)


class DatFile:
    """A memory-mapped ``*_td.dat`` recording, read by time window.

    ``DatFile(path).window(t0_us, t1_us) -> (t, x, y, p)`` for events with
    ``t0 <= t < t1`` (copies of just those events); ``len(f)`` events in all. The file is
    mapped on first use and unmapped by :meth:`close` (a later read maps it again), so a
    dataset of thousands of recordings can bound its open maps; pickling never copies the
    events (the map is left behind).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = os.path.abspath(os.fspath(path))   # workers may run in another folder
        self.header = read_dat_header(self.path)
        size = os.path.getsize(self.path) - self.header.data_offset
        self.n_events = max(size, 0) // EVENT_DTYPE.itemsize
        self._mm: np.ndarray | None = None

    def _map(self) -> np.ndarray:
        if self._mm is None:
            self._mm = np.memmap(self.path, dtype=EVENT_DTYPE, mode="r",
                                 offset=self.header.data_offset, shape=(self.n_events,)) \
                if self.n_events else np.zeros(0, dtype=EVENT_DTYPE)
        return self._mm

    @property
    def is_open(self) -> bool:
        """Whether the file is mapped now."""
        return self._mm is not None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_mm"] = None
        return state

    def __len__(self) -> int:
        return self.n_events

    @property
    def width(self) -> int | None:
        return self.header.width

    @property
    def height(self) -> int | None:
        return self.header.height

    def search(self, t_us: int) -> int:
        """Index of the first event with ``t >= t_us`` (binary search on the mapped file)."""
        mm = self._map()
        lo, hi = 0, self.n_events
        while lo < hi:
            mid = (lo + hi) // 2
            if int(mm[mid]["t"]) < t_us:
                lo = mid + 1
            else:
                hi = mid
        return lo

    @property
    def duration_us(self) -> int:
        """Timestamp of the last event + 1 (0 for an empty file)."""
        return int(self._map()[self.n_events - 1]["t"]) + 1 if self.n_events else 0

    def records(self, i0: int, i1: int) -> np.ndarray:
        """Raw records ``i0 .. i1-1`` (a copy, :data:`EVENT_DTYPE`)."""
        return np.array(self._map()[i0:i1])

    def window(self, t0_us: int, t1_us: int):
        """Events with ``t0_us <= t < t1_us``: ``(t int64, x uint16, y uint16, p uint8)``."""
        i0 = self.search(int(t0_us))
        i1 = max(i0, self.search(int(t1_us)))
        rec = self.records(i0, i1)
        x, y, p = unpack_xyp(rec["xyp"])
        return rec["t"].astype(np.int64), x, y, p

    def read_all(self):
        """Every event: ``(t, x, y, p)`` (loads the whole file; small files and tests only)."""
        rec = self.records(0, self.n_events)
        x, y, p = unpack_xyp(rec["xyp"])
        return rec["t"].astype(np.int64), x, y, p

    def close(self) -> None:
        """Unmap the file (its descriptor is released; the next read maps it again)."""
        mm = getattr(self._mm, "_mmap", None)
        self._mm = None
        if mm is not None:
            try:
                mm.close()
            except BufferError:      # a view of the map is still alive: leave it to the GC
                pass

    def __repr__(self) -> str:
        return (f"DatFile({os.path.basename(self.path)!r}, events={self.n_events}, "
                f"{self.width}x{self.height})")


def write_bbox(path: str | os.PathLike, boxes: np.ndarray, legacy: bool = False) -> str:
    """Write boxes (any structured array with the fields of :data:`BBOX_DTYPE`, either
    spelling) to ``*_bbox.npy``; ``legacy=True`` writes the older ``ts``/``confidence``
    record."""
    b = normalize_boxes(boxes)
    if legacy:
        out = np.zeros(len(b), dtype=BBOX_DTYPE_LEGACY)
        out["ts"] = b["t"]
        out["confidence"] = b["class_confidence"]
        for k in ("x", "y", "w", "h", "class_id", "track_id"):
            out[k] = b[k]
    else:
        out = b
    path = os.fspath(path)
    with open(path, "wb") as f:     # np.save on a file object keeps the exact name
        np.save(f, out)
    return path


def normalize_boxes(boxes: np.ndarray) -> np.ndarray:
    """A :data:`BBOX_DTYPE` copy of ``boxes`` read by field name (``ts`` -> ``t``,
    ``confidence`` -> ``class_confidence``; fields not present stay 0)."""
    names = boxes.dtype.names or ()
    alias = {"ts": "t", "confidence": "class_confidence"}
    out = np.zeros(len(boxes), dtype=BBOX_DTYPE)
    for name in names:
        target = alias.get(name, name)
        if target in BBOX_DTYPE.names:
            out[target] = boxes[name]
    if "t" not in names and "ts" not in names:
        raise ValueError("boxes need a 't' (or 'ts') field")
    return out


def read_bbox(path: str | os.PathLike) -> np.ndarray:
    """Boxes of a ``*_bbox.npy`` file as :data:`BBOX_DTYPE` (either spelling on disk)."""
    arr = np.load(path)
    if arr.dtype.names is None:
        raise ValueError(f"{os.fspath(path)!r} is not a structured box array")
    return normalize_boxes(arr)
