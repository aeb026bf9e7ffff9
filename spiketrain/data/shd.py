"""Spiking Heidelberg Digits (SHD) HDF5 reader and binner.

The published layout (one file per partition)::

    spikes/times   ragged float arrays, spike times of sample i in seconds
    spikes/units   ragged uint16 arrays, the firing channel (0..699) of each spike
    labels         [n_samples] integer class ids
    extra/...      optional metadata (speaker, keys, meta_info)

Each sample is binned to ``T`` steps of ``dt`` seconds: step ``floor(t / dt)``; spikes at
``t >= T * dt`` are dropped. ``binning="binary"`` (default): several spikes of one unit in
one step count once. ``binning="count"``: a step holds the number of spikes of the unit in
it, so a sample's input total does not depend on ``dt`` (what a change of time step needs:
``spiketrain.models.resolution`` treats inputs as counts per step). Samples stay sparse in
memory (one flat int32 key ``step * n_in + unit`` per spike, repeated per spike for counts,
CSR over samples) and are densified a batch at a time by :meth:`SHDDataset.get_batch`.
"""
from __future__ import annotations

import os
import warnings
from typing import Sequence

import numpy as np
import torch

from ..hardware.spikes import SparseSpikes
from .config import BINNINGS

# A spike within this fraction of a step below a step edge counts into the next step: spike
# times written on a grid of dt (k * dt in float32/float64) must not fall one step short.
EDGE_TOL = 1e-3


def unique_keys(keys: np.ndarray, size: int) -> np.ndarray:
    """Sorted unique values of int64 ``keys`` in ``[0, size)`` (a bitmap for small ``size``,
    else sort + compare; both much faster than ``np.unique`` on these arrays)."""
    if size <= 1 << 22:
        seen = np.zeros(size, dtype=bool)
        seen[keys] = True
        return np.flatnonzero(seen)
    a = np.sort(keys)
    return a[np.concatenate(([True], a[1:] != a[:-1]))] if a.size else a


def bin_spikes(times, units, T: int, dt: float, n_in: int, count: bool = False) -> np.ndarray:
    """Binned keys ``step * n_in + unit`` (sorted, int64) of one sample: unique (binary
    binning), or one key per spike (``count=True``: a key repeats as often as the unit fires
    in that step).

    ``times`` in seconds, ``units`` channel ids < ``n_in``. Spikes at ``t < 0`` or in a step
    ``>= T`` are dropped.
    """
    t = np.asarray(times, dtype=np.float64)
    u = np.asarray(units, dtype=np.int64)
    if t.shape != u.shape:
        raise ValueError(f"times and units differ in length: {t.shape} vs {u.shape}")
    if u.size and (u.min() < 0 or u.max() >= n_in):
        raise ValueError(f"unit ids must be in 0..{n_in - 1}, got {u.min()}..{u.max()}")
    # NaN / inf / negative times are dropped; the float step is compared before the cast so a
    # huge time cannot wrap around into a valid step
    fsteps = np.floor(t / dt + EDGE_TOL)
    keep = np.isfinite(t) & (t >= 0) & (fsteps >= 0) & (fsteps < T)
    steps = fsteps[keep].astype(np.int64)
    if count:
        return np.sort(steps * n_in + u[keep])
    return unique_keys(steps * n_in + u[keep], T * n_in)


_READ_ERRORS = (OSError, RuntimeError, KeyError, TypeError, ValueError, IndexError, EOFError,
                AttributeError, OverflowError)


def _read_fields(path: str, max_samples: int | None):
    """``(times, units, labels [n] int64, keys | None)`` of an SHD file, every field checked:
    one label per sample, integer labels in a 1-D array, per-sample 1-D numeric times and
    non-negative integer unit ids of the same length. Any failure is one ``ValueError`` line
    naming the file."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except _READ_ERRORS as e:
        raise ValueError(f"{path!r} is not a readable HDF5 file ({_short(e)}); check the file "
                         f"(a damaged or partial download?)") from None
    try:
        with f:
            for key in ("spikes/times", "spikes/units", "labels"):
                if key not in f or not isinstance(f[key], h5py.Dataset):
                    raise ValueError(f"{path!r} lacks dataset {key!r}: not an SHD-format file "
                                     "(needs spikes/times, spikes/units, labels)")
            dl, dt_, du = f["labels"], f["spikes/times"], f["spikes/units"]
            if dl.ndim != 1:
                raise ValueError(f"{path!r}: labels must be a 1-D array (one label per sample), "
                                 f"got shape {dl.shape}")
            if dl.dtype.kind not in "iu":
                raise ValueError(f"{path!r}: labels must be integers, got dtype {dl.dtype}")
            if dt_.ndim != 1 or du.ndim != 1:
                raise ValueError(f"{path!r}: spikes/times and spikes/units must hold one array per "
                                 f"sample, got shapes {dt_.shape} and {du.shape}")
            if not len(dl) == len(dt_) == len(du):
                raise ValueError(f"{path!r}: {len(dl)} labels, {len(dt_)} spikes/times and "
                                 f"{len(du)} spikes/units entries: every sample needs one of each")
            n = len(dl)
            if max_samples:
                n = min(n, int(max_samples))
            labels = np.asarray(dl[:n]).astype(np.int64)
            times = list(dt_[:n])
            units = list(du[:n])
            keys = None
            if "extra/keys" in f:
                keys = [k.decode(errors="replace") if isinstance(k, bytes) else str(k)
                        for k in f["extra/keys"][:]]
    except ValueError:
        raise
    except _READ_ERRORS as e:
        raise ValueError(f"{path!r}: cannot read the SHD fields ({_short(e)}); the file is "
                         f"damaged or not in the SHD layout") from None
    for i, (t, u) in enumerate(zip(times, units)):
        t, u = np.asarray(t), np.asarray(u)
        if t.ndim != 1 or u.ndim != 1 or t.shape != u.shape:
            raise ValueError(f"{path!r}: sample {i} has {t.shape} times and {u.shape} units; "
                             f"each sample needs 1-D arrays of equal length")
        if t.dtype.kind not in "fiu":
            raise ValueError(f"{path!r}: spike times must be numbers, got dtype {t.dtype}")
        if u.dtype.kind not in "iu":
            raise ValueError(f"{path!r}: unit ids must be integers, got dtype {u.dtype}")
        if u.size and u.min() < 0:
            raise ValueError(f"{path!r}: sample {i} has negative unit id {u.min()}; unit ids "
                             f"are channel numbers 0..n_in-1")
        times[i], units[i] = t.astype(np.float64), u.astype(np.int64)
    return times, units, labels, keys


def _short(e: BaseException) -> str:
    msg = " ".join(str(e).split())
    return f"{type(e).__name__}: {msg[:200]}" if msg else type(e).__name__


class SHDDataset:
    """Samples of an SHD-format HDF5 file, binned to ``[T, n_in]`` spike trains (binary, or
    spike counts per step with ``binning="count"``).

    ``ds[i] -> (SparseSpikes [T, 1, n_in], label: int)`` (count binning: a dense float32
    ``[T, 1, n_in]`` tensor of counts, since ``SparseSpikes`` is binary);
    ``ds.get_batch(indices, sparse=False) -> (x [T, B, n_in] float32 | SparseSpikes, labels [B])``
    (``sparse=True`` is binary only).

    Args:
        path: the HDF5 file.
        T, dt: steps per sample and seconds per step.
        n_in: input channels; a unit id ``>= n_in`` is an error.
        n_classes: classes; ``None`` = ``max(label) + 1``. A label ``>= n_classes`` is an error.
        max_samples: read only the first ``max_samples`` samples (``None``/0: all).
        binning: ``"binary"`` (a unit's spikes in one step count once) or ``"count"`` (the
            number of its spikes in the step).
    """

    def __init__(self, path: str | os.PathLike, T: int = 100, dt: float = 0.01, n_in: int = 700,
                 n_classes: int | None = None, max_samples: int | None = None,
                 binning: str = "binary"):
        if T <= 0 or dt <= 0:
            raise ValueError(f"T and dt must be positive, got T={T}, dt={dt}")
        if binning not in BINNINGS:
            raise ValueError(f"binning must be one of {', '.join(BINNINGS)}, got {binning!r}")
        self.binning = binning
        self.path, self.T, self.dt, self.n_in = str(path), int(T), float(dt), int(n_in)
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"SHD file not found: {self.path!r}")
        times, units, labels, self.keys = _read_fields(self.path, max_samples)
        n = len(labels)
        if n and labels.min() < 0:
            raise ValueError(f"{self.path!r}: negative label {labels.min()}")
        self.n_classes = int(n_classes) if n_classes else int(labels.max(initial=-1)) + 1
        if n and labels.max() >= self.n_classes:
            raise ValueError(f"{self.path!r}: label {labels.max()} >= n_classes={self.n_classes}; "
                             f"set data.n_classes to at least {labels.max() + 1}")
        max_unit = max((int(u.max()) for u in units if len(u)), default=-1)
        if max_unit >= self.n_in:
            raise ValueError(f"{self.path!r}: unit id {max_unit} >= n_in={self.n_in}; "
                             f"set data.n_in to at least {max_unit + 1}")
        # events that cannot be placed: not finite, or before t = 0 (those after T * dt are
        # cut by binning, as documented, and not counted here)
        self.dropped = {"non_finite": 0, "negative_time": 0}
        for t in times:
            fin = np.isfinite(t)
            self.dropped["non_finite"] += int(t.size - fin.sum())
            self.dropped["negative_time"] += int((t[fin] < 0).sum())
        if any(self.dropped.values()):
            warnings.warn(f"{self.path}: dropped {self.dropped['non_finite']} events with "
                          f"non-finite times and {self.dropped['negative_time']} with negative "
                          f"times", stacklevel=2)
        key_dtype = np.int32 if self.T * self.n_in < 2**31 else np.int64
        with np.errstate(invalid="ignore", over="ignore"):
            per_sample = [bin_spikes(t, u, self.T, self.dt, self.n_in,
                                     count=binning == "count").astype(key_dtype)
                          for t, u in zip(times, units)]
        lengths = np.fromiter((len(k) for k in per_sample), dtype=np.int64, count=n)
        self.offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(lengths, out=self.offsets[1:])
        self.flat_keys = np.concatenate(per_sample) if n else np.zeros(0, key_dtype)
        self.labels = labels

    # ------------------------------------------------------------------ dataset API
    def __len__(self) -> int:
        return len(self.labels)

    def sample_keys(self, i: int) -> np.ndarray:
        """Sorted keys ``step * n_in + unit`` of sample ``i``."""
        return self.flat_keys[self.offsets[i]:self.offsets[i + 1]]

    def __getitem__(self, i: int) -> tuple[SparseSpikes, int]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"sample {i} out of range for {len(self)} samples")
        i = i % len(self)
        k = torch.from_numpy(self.sample_keys(i).astype(np.int64))
        if self.binning == "count":
            x = torch.zeros(self.T * self.n_in)
            x.index_put_((k,), torch.ones(k.numel()), accumulate=True)
            return x.view(self.T, 1, self.n_in), int(self.labels[i])
        t, u = k // self.n_in, k % self.n_in
        return SparseSpikes(t, torch.zeros_like(t), u, (self.T, 1, self.n_in), check=False), \
            int(self.labels[i])

    def get_batch(self, indices: Sequence[int], sparse: bool = False):
        """Batch of samples ``indices``: ``(x, labels [B] int64)``.

        ``x`` is dense float32 ``[T, B, n_in]`` (one scatter) or, with ``sparse=True``,
        ``SparseSpikes [T, B, n_in]`` sorted by time (binary binning only). With count
        binning a step holds the spike count of the unit.
        """
        if sparse and self.binning == "count":
            raise ValueError("sparse batches are binary (SparseSpikes); count binning needs "
                             "dense batches (data.sparse: false)")
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        B = len(idx)
        starts, ends = self.offsets[idx], self.offsets[idx + 1]
        lengths = ends - starts
        keys = np.concatenate([self.flat_keys[s:e] for s, e in zip(starts, ends)]) if B else \
            np.zeros(0, np.int64)
        keys = keys.astype(np.int64, copy=False)
        batch = np.repeat(np.arange(B, dtype=np.int64), lengths)
        steps, units = keys // self.n_in, keys % self.n_in
        labels = torch.from_numpy(self.labels[idx].copy())
        if sparse:
            order = np.argsort(steps, kind="stable")
            return SparseSpikes(torch.from_numpy(steps[order]), torch.from_numpy(batch[order]),
                                torch.from_numpy(units[order]), (self.T, B, self.n_in),
                                check=False), labels
        x = torch.zeros(self.T, B, self.n_in)
        flat = torch.from_numpy((steps * B + batch) * self.n_in + units)
        if self.binning == "count":
            x.view(-1).index_put_((flat,), torch.ones(flat.numel()), accumulate=True)
        else:
            x.view(-1)[flat] = 1.0
        return x, labels

    @property
    def rate(self) -> float:
        """Mean input spike rate after binning: spikes per step x channel cell (binary
        binning: the fraction of cells that hold a spike)."""
        cells = len(self) * self.T * self.n_in
        return len(self.flat_keys) / cells if cells else 0.0

    def __repr__(self) -> str:
        return (f"SHDDataset({os.path.basename(self.path)!r}, n={len(self)}, T={self.T}, "
                f"dt={self.dt}, n_in={self.n_in}, n_classes={self.n_classes}, "
                f"binning={self.binning!r}, rate={self.rate:.4f})")
