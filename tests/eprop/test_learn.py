"""e-prop learns the synthetic SHD-format task about as well as BPTT with the same epochs."""

import pytest
import torch

from spiketrain.data import DataConfig, build_datasets
from spiketrain.models import RSNN
from spiketrain.trainer import Trainer

SMALL = dict(kind="synthetic", T=50, dt=0.02, n_in=100, n_classes=4, n_train=128, n_test=64,
             seed=0, channel_jitter=1)
FAST = dict(lr=0.01, batch_size=16, clip_grad=1.0, progress=False, verbose=False, threads=1)


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    return build_datasets(DataConfig(cache_dir=str(tmp_path_factory.mktemp("eprop_data")), **SMALL))


def _model(neuron):
    torch.manual_seed(0)
    return RSNN(n_in=100, hidden=32, n_out=4, dt=20.0, readout="mean", surrogate="superspike",
                neuron=neuron)


@pytest.mark.parametrize("neuron", ["lif"])
def test_eprop_within_5_points_of_bptt(small_data, tmp_path, neuron):
    acc = {}
    for strategy in ("bptt", "eprop"):
        row = Trainer(_model(neuron), small_data, strategy=strategy, epochs=4,
                      out_dir=tmp_path / strategy, **FAST).fit()
        acc[strategy] = row["test_acc"]
    assert acc["eprop"] >= 0.7, acc                  # 4 classes: chance is 0.25
    assert acc["eprop"] >= acc["bptt"] - 0.05, acc
