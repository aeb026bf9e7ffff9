"""DataConfig validation and build_datasets (synthetic files cached, read by the SHD reader)."""
import os

import pytest

from spiketrain.data import DataConfig, SHDDataset, build_datasets


@pytest.mark.parametrize("kw, match", [
    (dict(T=0), r"data\.T: must be a positive integer"),
    (dict(T=2.5), r"data\.T: must be a positive integer"),
    (dict(dt=-0.01), r"data\.dt: must be a positive number"),
    (dict(dt=10_000), r"data\.dt: is in seconds"),
    (dict(kind="mnist"), r"data\.kind: unknown kind 'mnist'; use one of synthetic, shd"),
    (dict(kind="shd"), r"data\.path: kind shd needs the train file"),
    (dict(kind="shd", path="/nonexistent/shd_train.h5"), r"data\.path: file not found"),
    (dict(n_classes=1), r"data\.n_classes"),
    (dict(n_train=-1), r"data\.n_train: must be an integer >= 0"),
    (dict(noise_rate=-1.0), r"data\.noise_rate"),
    (dict(n_bands=2), r"data\.n_bands: must be 0 or >= n_events \* n_formants = 3"),
])
def test_bad_values_raise_one_line(kw, match):
    with pytest.raises(ValueError, match=match) as e:
        DataConfig(**kw)
    assert "\n" not in str(e.value)


def test_build_synthetic_caches_and_reads_back(tmp_path):
    cfg = DataConfig(n_train=40, n_test=20, n_in=50, n_classes=4, T=50, dt=0.02,
                     cache_dir=str(tmp_path))
    train, test = build_datasets(cfg)
    assert isinstance(train, SHDDataset) and isinstance(test, SHDDataset)
    assert (len(train), len(test), train.n_in, train.n_classes, train.T) == (40, 20, 50, 4, 50)
    assert train.path != test.path and sorted(os.listdir(tmp_path)) == sorted(
        os.path.basename(p) for p in (train.path, test.path))
    mtime = os.path.getmtime(train.path)
    again, _ = build_datasets(cfg)                  # cached: same file, not rewritten
    assert again.path == train.path and os.path.getmtime(train.path) == mtime
    other, _ = build_datasets(DataConfig(**{**cfg.to_dict(), "seed": 1}))
    assert other.path != train.path
    assert 0.005 < train.rate < 0.06


def test_build_shd_reads_given_files(tmp_path):
    src = DataConfig(n_train=10, n_test=6, n_in=700, cache_dir=str(tmp_path))
    tr, te = build_datasets(src)
    cfg = DataConfig(kind="shd", path=tr.path, test_path=te.path, max_samples=8)
    train, test = build_datasets(cfg)
    assert (len(train), len(test)) == (8, 6)
