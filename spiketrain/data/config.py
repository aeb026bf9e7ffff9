"""``DataConfig``: the ``data:`` section of an experiment config.

Field names are part of the config schema (``data.T``, ``data.path``, ...): keep them stable.
Bad values raise ``ValueError`` with one line naming the key and the fix.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields

KINDS = ("synthetic", "shd")
BINNINGS = ("binary", "count")


@dataclass
class DataConfig:
    """Where the spikes come from and how they are binned.

    Binning: a spike at time ``t`` seconds goes to step ``floor(t / dt)``; steps ``>= T`` are
    dropped; several spikes of one unit in one step count once (``binning: binary``, the
    default) or add up (``binning: count``: the input total of a sample does not depend on
    ``dt``).
    """

    kind: str = "synthetic"          # "synthetic" (generated SHD-format files) | "shd" (real files)
    path: str | None = None          # train HDF5 file (kind shd)
    test_path: str | None = None     # test HDF5 file (kind shd; optional)
    T: int = 100                     # time steps per sample
    dt: float = 0.01                 # seconds per step
    n_train: int = 1024              # synthetic: train samples (kind shd: see max_samples)
    n_test: int = 256                # synthetic: test samples (0: no test set)
    n_classes: int = 20              # classes (shd: labels must be < n_classes)
    n_in: int = 700                  # input channels (shd: unit ids must be < n_in)
    seed: int = 0                    # synthetic class structure and samples
    cache_dir: str = "data_cache"    # where generated files are written (keyed by parameters)
    sparse: bool = False             # loader yields SparseSpikes instead of dense float32
    max_samples: int = 0             # kind shd: read at most this many samples per file (0: all)
    binning: str = "binary"          # "binary" (0/1 per step and unit) | "count" (spikes per step)
    # synthetic generator knobs (see spiketrain/data/synthetic.py)
    duration: float | None = None    # seconds per synthetic sample (None: T * dt)
    resolution: float | None = 0.001  # spike-time grid of generated files, s (None: continuous)
    noise_rate: float = 1.5          # background Poisson rate per channel, Hz
    signal_rate: float = 100.0       # peak rate inside a class pattern, Hz
    n_events: int = 3                # patterns (channel band x time window) per class
    n_formants: int = 1              # bands driven at once by each event
    n_bands: int = 0                 # >0: classes share a pool of n_bands bands (order matters)
    band_width: int = 40             # channels per band (scaled to n_in / 700; capped so
                                     # that classes own disjoint bands when n_bands = 0)
    event_width: float = 0.06        # std of an event's time profile, seconds
    jitter: float = 0.04             # std of per-sample event time jitter, seconds
    channel_jitter: int = 2          # max per-sample shift of the bands, channels
    intervals: list | None = None    # interval task: one interval (s) per class between
                                     # n_events volleys on one of max(1, n_bands) bands drawn
                                     # per sample (event_width, jitter, signal_rate,
                                     # band_width apply; channel_jitter does not)

    def __post_init__(self):
        self.validate()

    def validate(self) -> "DataConfig":
        """Check values; raise ``ValueError('data.<key>: ... ; fix')`` on the first bad one."""
        def bad(key, msg):
            raise ValueError(f"data.{key}: {msg}")

        if self.kind not in KINDS:
            bad("kind", f"unknown kind {self.kind!r}; use one of {', '.join(KINDS)}")
        for key in ("T", "n_classes", "n_in", "n_events", "n_formants", "band_width"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                bad(key, f"must be a positive integer, got {v!r}")
        for key in ("n_train", "n_test", "seed", "channel_jitter", "n_bands", "max_samples"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                bad(key, f"must be an integer >= 0, got {v!r}")
        for key in ("dt", "signal_rate", "event_width"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                bad(key, f"must be a positive number, got {v!r}")
        for key in ("noise_rate", "jitter"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
                bad(key, f"must be a number >= 0, got {v!r}")
        for key in ("duration", "resolution"):
            v = getattr(self, key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))
                                  or not v > 0):
                bad(key, f"must be a positive number of seconds or null, got {v!r}")
        if self.binning not in BINNINGS:
            bad("binning", f"unknown binning {self.binning!r}; use one of {', '.join(BINNINGS)}")
        if self.binning == "count" and self.sparse:
            bad("binning", "count binning needs dense batches (sparse spike batches are "
                           "binary); set data.sparse: false or data.binning: binary")
        if self.intervals is not None:
            self._check_intervals(bad)
        if self.dt > 10:
            bad("dt", f"is in seconds; {self.dt} s per step is surely a unit mistake (SHD: 0.01)")
        if self.kind == "synthetic":
            if self.n_train <= 0:
                bad("n_train", "synthetic data needs n_train >= 1")
            if self.n_classes < 2:
                bad("n_classes", "synthetic data needs at least 2 classes")
            k = self.n_events * self.n_formants
            if self.n_bands and self.n_bands < k:
                bad("n_bands", f"must be 0 or >= n_events * n_formants = {k}, got {self.n_bands}")
        if self.kind == "shd":
            if not self.path:
                bad("path", "kind shd needs the train file: set data.path: /path/to/shd_train.h5 "
                            "(or use data.kind: synthetic)")
            for key in ("path", "test_path"):
                p = getattr(self, key)
                if p is not None and not os.path.isfile(os.path.expanduser(str(p))):
                    bad(key, f"file not found: {p!r}; download SHD (shd_train.h5 / shd_test.h5) "
                             f"and point data.{key} at it")
        return self

    def _check_intervals(self, bad) -> None:
        iv = self.intervals
        if self.kind != "synthetic":
            bad("intervals", "is a synthetic-data option (the interval task); remove it for "
                             f"kind {self.kind}")
        if not isinstance(iv, (list, tuple)) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in iv):
            bad("intervals", f"must be a list of numbers (seconds), got {iv!r}")
        if len(iv) != self.n_classes or min(iv) <= 0:
            bad("intervals", f"needs one positive interval (seconds) per class: {self.n_classes} "
                             f"values, got {list(iv)!r}")
        if max(iv) > 10:
            bad("intervals", f"are in seconds; {max(iv)} s is surely a unit mistake")
        span = (self.n_events - 1) * max(iv) + 6 * self.event_width
        if span >= self.sample_duration:
            bad("intervals", f"{self.n_events} volleys {max(iv):g} s apart (plus 3 event widths "
                             f"each side) need more than {span:g} s; samples last "
                             f"{self.sample_duration:g} s (raise data.duration or data.T)")
        self.intervals = [float(v) for v in iv]

    @property
    def sample_duration(self) -> float:
        """Seconds covered by a synthetic sample."""
        return float(self.duration) if self.duration is not None else self.T * self.dt

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]
