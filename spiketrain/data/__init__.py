"""Data: the SHD HDF5 reader, a synthetic generator of the same format, and the loader.

``build_datasets(DataConfig(...)) -> (train_ds, test_ds)``; batch them with ``SpikeLoader``.
"""
from __future__ import annotations

from .config import DataConfig
from .loader import SpikeLoader
from .shd import SHDDataset, bin_spikes
from .synthetic import cached_synthetic_shd, class_patterns, make_synthetic_shd


def synthetic_params(cfg: DataConfig, split: str) -> dict:
    """Generator parameters of the ``split`` ("train" / "test") file for ``cfg``."""
    n = cfg.n_train if split == "train" else cfg.n_test
    params = dict(n_samples=n, n_classes=cfg.n_classes, n_in=cfg.n_in,
                  duration_s=cfg.sample_duration, seed=cfg.seed * 2 + (split == "test"),
                  class_seed=cfg.seed, n_events=cfg.n_events, n_formants=cfg.n_formants,
                  n_bands=cfg.n_bands, band_width=cfg.band_width, resolution=cfg.resolution,
                  noise_rate=cfg.noise_rate, signal_rate=cfg.signal_rate,
                  event_width=cfg.event_width, jitter=cfg.jitter,
                  channel_jitter=cfg.channel_jitter)
    if cfg.intervals is not None:   # the interval task (absent otherwise: same cache keys)
        del params["channel_jitter"]
        params["intervals"] = list(cfg.intervals)
    return params


def synthetic_paths(cfg: DataConfig) -> tuple[str, str | None]:
    """Generate (or reuse from ``cfg.cache_dir``) the synthetic train and test files."""
    train = cached_synthetic_shd(cfg.cache_dir, **synthetic_params(cfg, "train"))
    test = None
    if cfg.n_test:
        test = cached_synthetic_shd(cfg.cache_dir, **synthetic_params(cfg, "test"))
    return train, test


def build_datasets(cfg: DataConfig) -> tuple[SHDDataset, SHDDataset | None]:
    """``(train_ds, test_ds)`` for ``cfg`` (``test_ds`` is None without test data).

    kind ``synthetic``: writes train and test files (same class structure, different samples)
    under ``cfg.cache_dir`` and reads them back through the SHD reader. kind ``shd``: reads
    ``cfg.path`` and ``cfg.test_path`` (at most ``cfg.max_samples`` samples each when > 0).
    """
    if isinstance(cfg, dict):
        cfg = DataConfig(**cfg)
    cfg.validate()
    kw = dict(T=cfg.T, dt=cfg.dt, n_in=cfg.n_in, n_classes=cfg.n_classes, binning=cfg.binning)
    if cfg.kind == "synthetic":
        train_path, test_path = synthetic_paths(cfg)
        train = SHDDataset(train_path, **kw)
        test = SHDDataset(test_path, **kw) if test_path else None
        return train, test
    cap = cfg.max_samples or None
    train = SHDDataset(cfg.path, max_samples=cap, **kw)
    test = SHDDataset(cfg.test_path, max_samples=cap, **kw) if cfg.test_path else None
    return train, test


def _register_kinds() -> None:
    from .kinds import register_data_kind
    for kind in ("synthetic", "shd"):
        register_data_kind(kind, DataConfig, build_datasets, task="classification")


_register_kinds()

__all__ = ["DataConfig", "SHDDataset", "SpikeLoader", "bin_spikes", "build_datasets",
           "cached_synthetic_shd", "class_patterns", "make_synthetic_shd", "synthetic_paths"]
