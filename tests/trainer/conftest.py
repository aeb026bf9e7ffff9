import pytest
import torch

from spiketrain.data import DataConfig, build_datasets

SMALL = dict(kind="synthetic", T=50, dt=0.02, n_in=100, n_classes=4, n_train=128, n_test=64, seed=0,
             channel_jitter=1)   # bands of 6 channels: jitter them by at most 1


@pytest.fixture(scope="session")
def small_data(tmp_path_factory):
    """(train_ds, test_ds): 4 classes, 100 channels, 50 steps; generated once per session."""
    cache = tmp_path_factory.mktemp("data_cache")
    return build_datasets(DataConfig(cache_dir=str(cache), **SMALL))


def small_model(seed=0, **kw):
    from spiketrain.models import RSNN

    torch.manual_seed(seed)
    opts = dict(n_in=100, hidden=32, n_out=4, dt=20.0, readout="mean", surrogate="superspike")
    opts.update(kw)
    return RSNN(**opts)


TINY_CFG = """
model: {name: rsnn, hidden: 32, dt: 20.0, readout: mean, surrogate: superspike}
data: {kind: synthetic, T: 50, dt: 0.02, n_in: 100, n_classes: 4, n_train: 128, n_test: 64,
       seed: 0, channel_jitter: 1, cache_dir: CACHE}
strategy: bptt
trainer: {epochs: 1, batch_size: 16, lr: 0.01, clip_grad: 1.0, progress: false, threads: 1}
"""


@pytest.fixture
def write_cfg(tmp_path_factory, tmp_path):
    """``write_cfg(extra_yaml) -> path`` of the small config plus ``extra_yaml``."""
    cache = tmp_path_factory.getbasetemp() / "cfg_cache"

    def write(extra: str = "", name: str = "exp.yaml"):
        p = tmp_path / name
        p.write_text(TINY_CFG.replace("CACHE", str(cache)) + extra)
        return p
    return write
