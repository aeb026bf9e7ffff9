"""Event-camera detection data: ``data.kind: events`` (synthetic) and ``data.kind: gen1``.

A *recording* is a pair ``NAME_td.dat`` + ``NAME_bbox.npy`` (the Prophesee Gen1 formats, see
:mod:`spiketrain.data.gen1_format`). A *sample* is one labelled timestamp ``t`` of a
recording (after the Gen1 box filter): the input is the window of ``bins`` bins of
``bin_ms`` ending at ``t`` (``[T, 1, 2, H, W]`` event counts), the target the boxes
labelled at ``t``. Events are read from the memory-mapped file per batch, never whole.

``kind: events`` generates recordings (:mod:`spiketrain.data.event_synth`) under
``cache_dir``; ``kind: gen1`` reads the folders ``path`` (train) and ``test_path`` (test).
"""
from __future__ import annotations

import glob
import os
from dataclasses import asdict, dataclass, fields
from typing import Sequence

import numpy as np
import torch

from .event_synth import CLASS_NAMES, cached_event_recordings
from .event_tensors import (box_targets, event_keys, filter_boxes, grid_size, histogram,
                            sparse_spikes)
from .gen1_format import GEN1_HEIGHT, GEN1_WIDTH, DatFile, read_bbox
from .kinds import register_data_kind


@dataclass
class EventDataConfig:
    """The ``data:`` section of ``kind: events`` / ``kind: gen1``."""

    kind: str = "events"             # "events" (synthetic Gen1-format files) | "gen1" (real)
    path: str | None = None          # gen1: folder of *_td.dat + *_bbox.npy (train)
    test_path: str | None = None     # gen1: test folder (optional)
    bin_ms: float = 5.0              # bin length, ms
    bins: int = 10                   # bins per detection window (T): one detection per window
    downsample: int = 1              # integer factor: pixel (x, y) -> (x // f, y // f)
    binary: bool = False             # clip counts to 1 (always so with sparse: true)
    sparse: bool = False             # loader yields SparseSpikes (binary) instead of counts
    n_classes: int = 2               # Gen1: car (0), pedestrian (1)
    skip_first_s: float = 0.5        # Gen1 box filter: no samples in a recording's first 0.5 s
    min_box_diag: float = 30.0       # ... drop boxes with diagonal < 30 sensor px (0: off)
    min_box_side: float = 10.0       # ... or a side < 10 sensor px (0: off)
    max_samples: int = 0             # at most this many samples per split (0: all)
    seed: int = 0                    # synthetic recordings
    cache_dir: str = "data_cache"    # where synthetic recordings are written
    # synthetic recordings (kind events)
    width: int = GEN1_WIDTH          # sensor width, px (gen1: from the file header)
    height: int = GEN1_HEIGHT        # sensor height, px
    n_train: int = 16                # train recordings
    n_test: int = 4                  # test recordings (0: no test set)
    duration_s: float = 3.0          # seconds per recording
    max_objects: int = 3             # objects per recording: 1 .. max_objects
    noise_rate: float = 0.2          # background events per pixel and second
    edge_gain: float = 2.0           # events per px of edge per px of edge travel
    speed_min: float = 0.5           # object speeds: sensor widths per second, drawn
    speed_max: float = 1.5           # ... uniformly in [speed_min, speed_max]
    box_period_ms: float = 50.0      # one ground-truth box per object every ... ms

    def __post_init__(self):
        self.validate()

    def validate(self) -> "EventDataConfig":
        """Raise ``ValueError('data.<key>: ...')`` on the first bad value."""
        def bad(key, msg):
            raise ValueError(f"data.{key}: {msg}")

        if self.kind not in ("events", "gen1"):
            bad("kind", f"{self.kind!r} is not an event kind (events, gen1)")
        for key in ("bins", "downsample", "n_classes", "width", "height", "max_objects"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                bad(key, f"must be a positive integer, got {v!r}")
        for key in ("max_samples", "seed", "n_train", "n_test"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                bad(key, f"must be an integer >= 0, got {v!r}")
        for key in ("bin_ms", "duration_s", "edge_gain", "box_period_ms"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                bad(key, f"must be a positive number, got {v!r}")
        if self.speed_max < self.speed_min:
            bad("speed_max", f"must be >= speed_min={self.speed_min}, got {self.speed_max}")
        for key in ("skip_first_s", "min_box_diag", "min_box_side", "noise_rate", "speed_min",
                    "speed_max"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
                bad(key, f"must be a number >= 0, got {v!r}")
        if self.bin_ms * 1000 != int(self.bin_ms * 1000):
            bad("bin_ms", f"must be a whole number of microseconds, got {self.bin_ms}")
        if self.kind == "events" and self.n_train == 0:
            bad("n_train", "synthetic events need n_train >= 1 recordings")
        if self.kind == "gen1":
            if not self.path:
                bad("path", "kind gen1 needs the folder of *_td.dat / *_bbox.npy train files: "
                            "set data.path: /path/to/gen1/train (or use data.kind: events)")
            for key in ("path", "test_path"):
                p = getattr(self, key)
                if p is not None and not os.path.isdir(os.path.expanduser(str(p))):
                    bad(key, f"folder not found: {p!r}")
        return self

    @property
    def T(self) -> int:
        """Time steps per sample (= ``bins``), as other kinds name it (sweeps plot against it)."""
        return self.bins

    @property
    def window_us(self) -> int:
        return int(round(self.bin_ms * 1000)) * self.bins

    def model_sizes(self) -> dict:
        """Model options these data fix, used by the config when the model leaves them out:
        ``num_classes``, ``bins`` and ``input_size`` ``[H, W]`` of the (downsampled) grid.
        kind gen1 assumes the Gen1 sensor (``width`` x ``height``) for the grid."""
        H, W = grid_size(self.width, self.height, self.downsample)
        return {"num_classes": self.n_classes, "bins": self.bins, "input_size": [H, W]}

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def recording_pairs(folder: str | os.PathLike) -> list[tuple[str, str]]:
    """Sorted ``(NAME_td.dat, NAME_bbox.npy)`` pairs of a folder (a ``.dat`` without its box
    file is an error)."""
    folder = os.path.expanduser(os.fspath(folder))
    dats = sorted(glob.glob(os.path.join(folder, "*_td.dat")))
    if not dats:
        raise ValueError(f"no *_td.dat recordings in {folder!r}")
    pairs = []
    for d in dats:
        b = d[: -len("_td.dat")] + "_bbox.npy"
        if not os.path.isfile(b):
            raise ValueError(f"{d!r} has no box file {os.path.basename(b)!r} next to it")
        pairs.append((d, b))
    return pairs


class EventDetectionDataset:
    """Labelled windows of event recordings.

    ``ds.get_batch(indices, sparse=False) -> (x, targets)``: ``x`` float32
    ``[T, B, 2, H, W]`` event counts (``SparseSpikes`` with ``sparse=True``), ``targets`` a
    list of ``B`` float32 ``[n_i, 5]`` tensors ``(class, x, y, w, h)`` in input-grid pixels.
    ``ds[i]`` is the same for one sample (``x [T, 1, 2, H, W]``, ``boxes [n, 5]``).

    Args:
        pairs: ``(dat, bbox)`` file pairs, one per recording.
        bin_ms, bins: bin length and bins per window (T).
        downsample: integer grid factor.
        skip_first_s, min_box_diag, min_box_side: the Gen1 box filter (sensor pixels).
        width, height: sensor size when a file header gives none.
        binary: clip dense counts to 1.
        max_samples: keep at most this many samples (evenly spread; 0: all).
        max_open: recordings kept memory-mapped at once.
    """

    def __init__(self, pairs: Sequence[tuple[str, str]], bin_ms: float = 5.0, bins: int = 10,
                 downsample: int = 1, skip_first_s: float = 0.5, min_box_diag: float = 30.0,
                 min_box_side: float = 10.0, width: int = GEN1_WIDTH, height: int = GEN1_HEIGHT,
                 binary: bool = False, n_classes: int = 2, max_samples: int = 0,
                 max_open: int = 64):
        self.bin_us, self.T, self.factor = int(round(bin_ms * 1000)), int(bins), int(downsample)
        self.binary, self.n_classes = bool(binary), int(n_classes)
        self.max_open, self._open = int(max_open), []
        self.files = [DatFile(d) for d, _ in pairs]
        ws = {f.width or width for f in self.files}
        hs = {f.height or height for f in self.files}
        if len(ws) > 1 or len(hs) > 1:
            raise ValueError(f"recordings differ in sensor size: widths {ws}, heights {hs}")
        self.width, self.height = ws.pop() if ws else width, hs.pop() if hs else height
        self.H, self.W = grid_size(self.width, self.height, self.factor)
        window = self.bin_us * self.T
        self.boxes, index = [], []
        for r, (_, bpath) in enumerate(pairs):
            boxes = filter_boxes(read_bbox(bpath), int(round(skip_first_s * 1e6)), min_box_diag,
                                 min_box_side)
            if len(boxes) and boxes["class_id"].max() >= self.n_classes:
                raise ValueError(f"{bpath!r}: class id {boxes['class_id'].max()} >= "
                                 f"n_classes={self.n_classes}; set data.n_classes")
            boxes = boxes[boxes["t"] >= window]          # a full window before the label
            boxes = boxes[np.argsort(boxes["t"], kind="stable")]
            self.boxes.append(boxes)
            ts, starts = np.unique(boxes["t"], return_index=True)
            ends = np.append(starts[1:], len(boxes))
            index += [(r, int(t), int(a), int(b)) for t, a, b in zip(ts, starts, ends)]
        if max_samples and len(index) > max_samples:
            keep = np.linspace(0, len(index) - 1, max_samples).round().astype(int)
            index = [index[i] for i in keep]
        self.index = index            # (recording, t_end us, first box row, end box row)

    # ------------------------------------------------------------------ dataset API
    def __len__(self) -> int:
        return len(self.index)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Per-step input shape ``(2, H, W)``."""
        return (2, self.H, self.W)

    def _file(self, r: int) -> DatFile:
        """Recording ``r``, keeping at most ``max_open`` files mapped (least recently used
        ones are unmapped: Gen1 has more recordings than a process may open files)."""
        f = self.files[r]
        if r in self._open:
            self._open.remove(r)
        self._open.append(r)
        while len(self._open) > self.max_open:
            self.files[self._open.pop(0)].close()
        return f

    def window_events(self, i: int):
        """Raw events ``(t, x, y, p)`` (sensor pixels) of sample ``i``'s window."""
        r, t_end, _, _ = self.index[i]
        return self._file(r).window(t_end - self.bin_us * self.T, t_end)

    def targets(self, i: int) -> torch.Tensor:
        """float32 ``[n, 5]`` ``(class, x, y, w, h)`` in input-grid pixels of sample ``i``."""
        r, _, a, b = self.index[i]
        return box_targets(self.boxes[r][a:b], self.width, self.height, self.factor)

    def _keys(self, i: int):
        r, t_end, _, _ = self.index[i]
        t, x, y, p = self.window_events(i)
        return event_keys(t, x, y, p, t_end - self.bin_us * self.T, self.bin_us, self.T,
                          self.H, self.W, self.factor)

    def get_batch(self, indices: Sequence[int], sparse: bool = False):
        """``(x [T, B, 2, H, W] float32 | SparseSpikes, [B x float32 [n_i, 5]])``."""
        idx = [int(i) for i in np.asarray(indices).reshape(-1)]
        keys = [self._keys(i) for i in idx]
        bins, feats = [k[0] for k in keys], [k[1] for k in keys]
        x = sparse_spikes(bins, feats, self.T, self.H, self.W) if sparse else \
            histogram(bins, feats, self.T, self.H, self.W, self.binary)
        return x, [self.targets(i) for i in idx]

    def __getitem__(self, i: int):
        if not -len(self) <= i < len(self):
            raise IndexError(f"sample {i} out of range for {len(self)} samples")
        x, t = self.get_batch([i % len(self)])
        return x, t[0]

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(CLASS_NAMES[:self.n_classes]) if self.n_classes <= len(CLASS_NAMES) else \
            tuple(str(c) for c in range(self.n_classes))

    def __repr__(self) -> str:
        return (f"EventDetectionDataset(recordings={len(self.files)}, samples={len(self)}, "
                f"T={self.T}, bin_us={self.bin_us}, grid={self.H}x{self.W}, "
                f"sensor={self.width}x{self.height})")


def synthetic_folders(cfg: EventDataConfig) -> tuple[str, str | None]:
    """Generate (or reuse from ``cfg.cache_dir``) the train and test recording folders."""
    kw = dict(duration_s=cfg.duration_s, width=cfg.width, height=cfg.height,
              max_objects=cfg.max_objects, noise_rate=cfg.noise_rate, edge_gain=cfg.edge_gain,
              box_period_ms=cfg.box_period_ms, speed=(cfg.speed_min, cfg.speed_max))
    train = cached_event_recordings(cfg.cache_dir, cfg.n_train, cfg.seed * 2, **kw)
    test = cached_event_recordings(cfg.cache_dir, cfg.n_test, cfg.seed * 2 + 1, **kw) \
        if cfg.n_test else None
    return train, test


def build_event_datasets(cfg: EventDataConfig | dict):
    """``(train_ds, test_ds or None)`` of :class:`EventDetectionDataset` for ``cfg``."""
    if isinstance(cfg, dict):
        cfg = EventDataConfig(**cfg)
    cfg.validate()
    if cfg.kind == "events":
        train_dir, test_dir = synthetic_folders(cfg)
    else:
        train_dir, test_dir = cfg.path, cfg.test_path
    kw = dict(bin_ms=cfg.bin_ms, bins=cfg.bins, downsample=cfg.downsample,
              skip_first_s=cfg.skip_first_s, min_box_diag=cfg.min_box_diag,
              min_box_side=cfg.min_box_side, width=cfg.width, height=cfg.height,
              binary=cfg.binary or cfg.sparse, n_classes=cfg.n_classes,
              max_samples=cfg.max_samples)
    train = EventDetectionDataset(recording_pairs(train_dir), **kw)
    test = EventDetectionDataset(recording_pairs(test_dir), **kw) if test_dir else None
    for key, ds in (("path", train), ("test_path", test)):
        if ds is not None and len(ds) == 0:
            raise ValueError(f"data.{key if cfg.kind == 'gen1' else 'n_train'}: no labelled "
                             f"window is left after the box filter (skip_first_s="
                             f"{cfg.skip_first_s}, min_box_diag={cfg.min_box_diag}, "
                             f"min_box_side={cfg.min_box_side}); lower them or add recordings")
    return train, test


register_data_kind("events", EventDataConfig, build_event_datasets, task="detection")
register_data_kind("gen1", EventDataConfig, build_event_datasets, task="detection")

__all__ = ["EventDataConfig", "EventDetectionDataset", "build_event_datasets",
           "recording_pairs", "synthetic_folders"]
