"""Synthetic data in the SHD HDF5 layout, with learnable class structure.

Each class is a sequence of ``n_events`` *events*: a band of neighbouring channels (as a
formant drives neighbouring cochlear channels) that fires in a time window. By default every
class owns its bands (disjoint channels), which a recurrent SNN learns in a few epochs.
Per sample the pattern is jittered (whole-sample time shift and stretch, per-event time
jitter, a channel shift of the bands, a gain) and laid over background Poisson noise at
``noise_rate`` Hz on every channel. With ``n_bands > 0`` all classes draw their bands from
one shared pool of ``n_bands`` bands, so classes can share the same bands and differ only in
their order: the task then needs temporal integration, not only spike counts.

Opt-in (``intervals=``, in a config ``data.intervals``, off by default): classes that differ
only in a time interval in seconds. Each sample is ``n_events`` brief volleys on one band
drawn per sample (so channels carry no class), spaced by its class's interval, at a random
onset; spike counts do not depend on the class. A network must measure real time, so one that keeps its per-step decays
at another step (sees every interval scaled) misreads the class: the task separates
time-resolution mappings (:mod:`spiketrain.models.resolution`).

Files are written exactly like the published SHD files (``spikes/times`` ragged float
seconds, ``spikes/units`` ragged uint16, ``labels`` uint8, plus ``extra/keys`` and
``extra/speaker``), so the SHD reader is what reads them.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass

import numpy as np

from .shd import unique_keys

FORMAT_VERSION = 1


@dataclass(frozen=True)
class ClassPatterns:
    """Per class and event: band centres ``[n_classes, n_events, n_formants]`` (channels),
    event times ``[n_classes, n_events]`` (seconds), and the band width in channels."""

    centers: np.ndarray
    times: np.ndarray
    width: int


def class_patterns(n_classes: int, n_in: int, duration: float, n_events: int = 3,
                   band_width: int = 40, n_bands: int = 0, seed: int = 0,
                   n_formants: int = 1) -> ClassPatterns:
    """Draw the class structure (deterministic in ``seed``; shared by train and test files).

    Events sit in ``n_events`` time slots spread over the first 85 % of ``duration``; each
    event drives ``n_formants`` bands at once. With ``n_bands=0`` every class owns its own
    channels: the channel axis is cut into ``n_classes * n_events * n_formants`` disjoint
    bands (width capped at ``n_in`` / that count) dealt out at random. With ``n_bands > 0``
    the bands come from a shared pool of ``n_bands``, every class a distinct assignment.
    """
    rng = np.random.default_rng([seed, 0x5D7])
    lo, hi = band_width / 2, n_in - band_width / 2
    slots = (np.arange(n_events) + 0.5) / n_events * 0.85 * duration
    times = np.broadcast_to(slots, (n_classes, n_events)).copy()
    k = n_events * n_formants
    if n_bands:
        if n_bands < k:
            raise ValueError(f"n_bands={n_bands} must be >= n_events * n_formants = {k}")
        pool = np.linspace(lo, hi, n_bands)
        seen, rows = set(), []
        for _ in range(1000 * n_classes):
            pick = rng.choice(n_bands, k, replace=False).reshape(n_events, n_formants)
            key = tuple(tuple(sorted(ev)) for ev in pick.tolist())
            if key not in seen:
                seen.add(key)
                rows.append(pool[pick])
                if len(rows) == n_classes:
                    break
        else:
            raise ValueError(f"n_bands={n_bands} too small for {n_classes} distinct classes")
        centers = np.array(rows)
    else:
        n_slots = n_classes * k
        slot = n_in / n_slots
        if slot >= 1:
            band_width = max(1, min(band_width, int(slot)))
            order = rng.permutation(n_slots).reshape(n_classes, n_events, n_formants)
            centers = (order + 0.5) * slot
        else:   # more bands than channels: overlapping random bands
            centers = rng.uniform(lo, hi, (n_classes, n_events, n_formants))
    return ClassPatterns(centers=centers, times=times, width=int(band_width))


def generate_sample(rng: np.random.Generator, label: int, pat: ClassPatterns, n_in: int,
                    duration: float, resolution: float | None = 0.001, noise_rate: float = 1.5,
                    signal_rate: float = 100.0, event_width: float = 0.06, jitter: float = 0.04,
                    channel_jitter: int = 2):
    """One sample: ``(times float32 [n] seconds sorted, units uint16 [n])``.

    Spike times lie in ``[0, duration)``; with ``resolution`` they are on the grid
    ``k * resolution`` and each unit fires at most once per grid point.
    """
    ts, us = [], []
    # background: homogeneous Poisson on every channel
    n_noise = rng.poisson(noise_rate * duration * n_in)
    ts.append(rng.uniform(0.0, duration, n_noise))
    us.append(rng.integers(0, n_in, n_noise))
    # class events, jittered per sample
    stretch = rng.uniform(0.85, 1.15)
    shift = rng.normal(0.0, jitter)
    ch_shift = rng.integers(-channel_jitter, channel_jitter + 1) if channel_jitter else 0
    gain = rng.uniform(0.7, 1.3)
    band_width = pat.width
    sigma_c = band_width / 3
    area = event_width * np.sqrt(2 * np.pi)  # integral of the Gaussian time profile
    for bands, t_ev in zip(pat.centers[label], pat.times[label]):
        t0 = t_ev * stretch + shift + rng.normal(0.0, jitter / 2)
        for center in np.atleast_1d(bands):
            c0 = center + ch_shift + rng.normal(0.0, 1.0)
            ch = np.arange(max(0, int(np.ceil(c0 - band_width / 2))),
                           min(n_in, int(np.floor(c0 + band_width / 2)) + 1))
            profile = np.exp(-0.5 * ((ch - c0) / sigma_c) ** 2)
            units = np.repeat(ch, rng.poisson(gain * signal_rate * area * profile))
            ts.append(rng.normal(t0, event_width, units.size))
            us.append(units)
    return _on_grid(np.concatenate(ts), np.concatenate(us), duration, n_in, resolution)


def generate_interval_sample(rng: np.random.Generator, label: int, intervals, n_in: int,
                             duration: float, resolution: float | None = 0.001,
                             noise_rate: float = 1.5, signal_rate: float = 100.0,
                             event_width: float = 0.003, jitter: float = 0.002,
                             n_events: int = 3, band_width: int = 20, n_bands: int = 6):
    """One sample of the interval task (``intervals[label]`` seconds between volleys):
    ``(times float32 [n] seconds sorted, units uint16 [n])`` as :func:`generate_sample`.

    ``n_events`` volleys (Gaussian time profile of std ``event_width``, peak ``signal_rate``
    Hz per channel, gain in [0.7, 1.3]) on one of ``n_bands`` bands of ``band_width``
    channels, chosen per sample; volley ``k`` at ``t0 + k * interval`` plus ``jitter`` (std,
    s) each; ``t0`` uniform such that every volley of the longest interval fits."""
    intervals = np.asarray(intervals, dtype=np.float64)
    span = (n_events - 1) * float(intervals.max())
    margin = 3 * event_width
    if span + 2 * margin >= duration:
        raise ValueError(f"intervals up to {intervals.max():g} s x {n_events - 1} do not fit "
                         f"in samples of {duration:g} s")
    ts, us = [], []
    n_noise = rng.poisson(noise_rate * duration * n_in)
    ts.append(rng.uniform(0.0, duration, n_noise))
    us.append(rng.integers(0, n_in, n_noise))
    half = band_width / 2
    centre = np.linspace(half, n_in - half, max(1, n_bands))[rng.integers(0, max(1, n_bands))]
    ch = np.arange(max(0, int(np.ceil(centre - half))), min(n_in, int(np.floor(centre + half)) + 1))
    profile = np.exp(-0.5 * ((ch - centre) / (band_width / 3)) ** 2)
    area = event_width * np.sqrt(2 * np.pi)
    t0 = rng.uniform(margin, duration - margin - span)
    gain = rng.uniform(0.7, 1.3)
    for k in range(n_events):
        tk = t0 + k * intervals[label] + rng.normal(0.0, jitter)
        units = np.repeat(ch, rng.poisson(gain * signal_rate * area * profile))
        ts.append(rng.normal(tk, event_width, units.size))
        us.append(units)
    return _on_grid(np.concatenate(ts), np.concatenate(us), duration, n_in, resolution)


def _on_grid(t, u, duration, n_in, resolution):
    """Spikes in ``[0, duration)``, on the grid ``k * resolution`` with one spike per unit and
    grid point (``resolution`` None: sorted, off grid)."""
    keep = (t >= 0) & (t < duration)
    t, u = t[keep], u[keep]
    if resolution:
        n_grid = int(np.ceil(duration / resolution))
        k = np.minimum(np.floor(t / resolution).astype(np.int64), n_grid - 1)
        key = unique_keys(k * n_in + u, n_grid * n_in)   # one spike per (grid point, unit)
        k, u = key // n_in, key % n_in
        t = k * resolution
    else:
        order = np.argsort(t, kind="stable")
        t, u = t[order], u[order]
    return t.astype(np.float32), u.astype(np.uint16)


def make_synthetic_shd(path: str | os.PathLike, n_samples: int = 1024, n_classes: int = 20,
                       n_in: int = 700, duration_s: float = 1.0, seed: int = 0,
                       class_seed: int | None = None, n_events: int = 3, n_bands: int = 0,
                       band_width: int = 40, n_formants: int = 1, intervals=None,
                       **sample_kw) -> str:
    """Write ``n_samples`` synthetic samples to ``path`` in the SHD HDF5 layout.

    ``class_seed`` (default ``seed``) fixes the class structure, ``seed`` the samples: train
    and test files share ``class_seed`` and differ in ``seed``. Labels are balanced
    (``i % n_classes``, shuffled). ``sample_kw`` goes to :func:`generate_sample`
    (resolution, noise_rate, signal_rate, event_width, jitter, channel_jitter).
    Written to a temporary file and renamed, so readers never see a partial file.

    ``intervals`` (opt-in; one interval in seconds per class): the interval task of
    :func:`generate_interval_sample` instead (``n_events`` volleys, ``n_bands`` bands, band
    width ``band_width`` scaled to ``n_in`` / 700; ``sample_kw``: resolution, noise_rate,
    signal_rate, event_width, jitter).
    """
    import h5py

    if n_samples <= 0 or n_classes < 2 or n_in <= 0 or duration_s <= 0:
        raise ValueError("need n_samples > 0, n_classes >= 2, n_in > 0, duration_s > 0")
    band_width = max(2, min(int(round(band_width * n_in / 700)), n_in))
    if intervals is not None:
        intervals = [float(v) for v in intervals]
        if len(intervals) != n_classes or min(intervals) <= 0:
            raise ValueError(f"intervals: one positive interval (s) per class, got "
                             f"{len(intervals)} for {n_classes} classes")
        pat = None
    else:
        pat = class_patterns(n_classes, n_in, duration_s, n_events, band_width, n_bands,
                             seed if class_seed is None else class_seed, n_formants)
    rng = np.random.default_rng([seed, 0xDA7A])
    labels = rng.permutation(np.arange(n_samples) % n_classes).astype(np.uint8 if n_classes <= 256
                                                                      else np.int64)
    times = np.empty(n_samples, dtype=object)
    units = np.empty(n_samples, dtype=object)
    for i, y in enumerate(labels):
        if intervals is not None:
            times[i], units[i] = generate_interval_sample(
                rng, int(y), intervals, n_in, duration_s, n_events=n_events,
                band_width=band_width, n_bands=max(1, n_bands), **sample_kw)
        else:
            times[i], units[i] = generate_sample(rng, int(y), pat, n_in, duration_s, **sample_kw)
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with h5py.File(tmp, "w") as f:
            g = f.create_group("spikes")
            for name, arrays, dtype in (("times", times, np.float32), ("units", units, np.uint16)):
                ds = g.create_dataset(name, (n_samples,), dtype=h5py.vlen_dtype(dtype))
                if n_samples == 1:   # h5py reads a 1-element object array as one 2-D array
                    ds[0] = arrays[0]
                elif n_samples:
                    ds[:] = arrays
            f.create_dataset("labels", data=labels)
            e = f.create_group("extra")
            e.create_dataset("keys", data=np.array([f"class_{c:02d}".encode()
                                                    for c in range(n_classes)]))
            e.create_dataset("speaker", data=rng.integers(0, 10, n_samples).astype(np.uint8))
            f.attrs["generator"] = json.dumps(dict(
                name="spiketrain.synthetic", version=FORMAT_VERSION, n_samples=n_samples,
                n_classes=n_classes, n_in=n_in, duration_s=duration_s, seed=seed,
                class_seed=class_seed, n_events=n_events, n_bands=n_bands, band_width=band_width,
                n_formants=n_formants, **({"intervals": intervals} if intervals else {}),
                **sample_kw))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def cached_synthetic_shd(cache_dir: str | os.PathLike, **params) -> str:
    """Path of a synthetic file for ``params`` under ``cache_dir``, generating it if missing.

    The file name carries a hash of the parameters (and the format version), so a changed
    parameter gives a new file and an unchanged one reuses the cached file.
    """
    key = json.dumps(dict(params, version=FORMAT_VERSION), sort_keys=True, default=str)
    digest = hashlib.sha1(key.encode()).hexdigest()[:12]
    path = os.path.join(os.fspath(cache_dir), f"synthetic_shd_{digest}.h5")
    if not os.path.isfile(path):
        make_synthetic_shd(path, **params)
    return path
