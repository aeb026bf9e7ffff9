"""Count binning (a step holds a unit's number of spikes) and the interval task as a data
config option (``data.intervals``)."""
import hashlib
import json

import h5py
import numpy as np
import pytest
import torch

from spiketrain.data import (DataConfig, SHDDataset, SpikeLoader, bin_spikes, build_datasets,
                             synthetic_params)

from .test_shd import _write_shd

TIMES = [0.0, 0.0099, 0.01, 0.031, 0.039, 0.049, 0.05, 0.2]
UNITS = [0, 1, 1, 2, 2, 3, 3, 3]


def _write(path, times, units, labels):
    _write_shd(path, times, units, labels)
    return path


def test_count_binning_semantics(tmp_path):
    p = _write(tmp_path / "tiny.h5", [TIMES], [UNITS], [1])
    ds = SHDDataset(p, T=5, dt=0.01, n_in=4, n_classes=2, binning="count")
    x, _ = ds.get_batch([0])
    expected = torch.zeros(5, 1, 4)
    for t, u in [(0, 0), (0, 1), (1, 1), (3, 2), (3, 2), (4, 3)]:
        expected[t, 0, u] += 1
    torch.testing.assert_close(x, expected, rtol=0, atol=0)
    assert float(x[3, 0, 2]) == 2.0           # binary binning would hold 1 here
    binary, _ = SHDDataset(p, T=5, dt=0.01, n_in=4, n_classes=2).get_batch([0])
    torch.testing.assert_close(binary, expected.clamp(max=1), rtol=0, atol=0)
    one, label = ds[0]                          # a dense count tensor (SparseSpikes is binary)
    assert label == 1 and isinstance(one, torch.Tensor)
    torch.testing.assert_close(one, expected, rtol=0, atol=0)
    keys = bin_spikes(TIMES, UNITS, T=5, dt=0.01, n_in=4, count=True)
    assert keys.tolist() == sorted(keys.tolist()) and len(keys) == 6


def test_count_totals_do_not_depend_on_the_step(tmp_path):
    rng = np.random.default_rng(0)
    times = [np.sort(rng.uniform(0, 0.399, 300)).round(3) for _ in range(3)]
    units = [rng.integers(0, 5, 300) for _ in range(3)]
    p = _write(tmp_path / "dense.h5", times, units, [0, 1, 0])
    totals, binary = [], []
    for dt in (0.002, 0.005, 0.01, 0.02, 0.04):
        T = int(round(0.4 / dt))
        x, _ = SHDDataset(p, T=T, dt=dt, n_in=5, binning="count").get_batch([0, 1, 2])
        totals.append(x.sum((0, 2)).tolist())
        xb, _ = SHDDataset(p, T=T, dt=dt, n_in=5).get_batch([0, 1, 2])
        binary.append(float(xb.sum()))
        # summing pairs of fine steps gives the coarser binning exactly
        if dt == 0.01:
            fine, _ = SHDDataset(p, T=2 * T, dt=dt / 2, n_in=5, binning="count").get_batch(
                [0, 1, 2])
            torch.testing.assert_close(fine.view(T, 2, 3, 5).sum(1), x, rtol=0, atol=0)
    assert all(t == [300.0, 300.0, 300.0] for t in totals), totals
    assert binary == sorted(binary, reverse=True) and binary[-1] < binary[0]  # collisions


def test_count_binning_refuses_sparse_batches(tmp_path):
    p = _write(tmp_path / "tiny.h5", [TIMES], [UNITS], [1])
    ds = SHDDataset(p, T=5, dt=0.01, n_in=4, n_classes=2, binning="count")
    with pytest.raises(ValueError, match="count binning needs dense batches"):
        ds.get_batch([0], sparse=True)
    with pytest.raises(ValueError, match="binning must be one of binary, count"):
        SHDDataset(p, T=5, dt=0.01, n_in=4, binning="sum")
    x, y = next(iter(SpikeLoader(ds, batch_size=1, shuffle=False)))
    assert float(x.sum()) == 6.0 and y.tolist() == [1]


@pytest.mark.parametrize("kw, match", [
    (dict(binning="sum"), r"data\.binning: unknown binning 'sum'"),
    (dict(binning="count", sparse=True), r"data\.binning: count binning needs dense batches"),
    (dict(n_classes=3, intervals=[0.02, 0.04]), r"data\.intervals: needs one positive interval"),
    (dict(n_classes=2, intervals=[0.02, -0.04]), r"data\.intervals: needs one positive"),
    (dict(n_classes=2, intervals="0.02"), r"data\.intervals: must be a list of numbers"),
    (dict(n_classes=2, intervals=[20, 40]), r"data\.intervals: are in seconds"),
    (dict(n_classes=2, intervals=[0.02, 0.3], T=50, dt=0.01),
     r"data\.intervals: 3 volleys 0\.3 s apart .* samples last 0\.5 s"),
])
def test_bad_binning_and_intervals_raise_one_line(kw, match):
    with pytest.raises(ValueError, match=match) as e:
        DataConfig(**kw)
    assert "\n" not in str(e.value)


def test_intervals_build_the_interval_task(tmp_path):
    cfg = DataConfig(n_train=24, n_test=8, n_in=70, n_classes=3, T=40, dt=0.01, n_bands=4,
                     intervals=[0.02, 0.04, 0.08], event_width=0.003, jitter=0.0,
                     signal_rate=800.0, noise_rate=0.0, binning="count",
                     cache_dir=str(tmp_path))
    train, test = build_datasets(cfg)
    assert train.binning == "count" and len(test) == 8
    with h5py.File(train.path) as f:
        meta = json.loads(f.attrs["generator"])
        labels = f["labels"][:]
    assert meta["intervals"] == [0.02, 0.04, 0.08] and meta["n_bands"] == 4
    x, y = train.get_batch(range(24))
    assert torch.equal(y, torch.as_tensor(labels, dtype=torch.int64))
    assert float(x.max()) > 1                   # volleys put several spikes in a 10 ms step
    # volley onsets: the active steps of each sample span about 2 intervals
    for b in range(24):
        steps = torch.nonzero(x[:, b].sum(1)).flatten().float()
        span = float(steps.max() - steps.min()) * 0.01
        assert abs(span - 2 * cfg.intervals[int(y[b])]) <= 0.025, (b, span)


def test_default_config_keeps_its_cache_keys_and_bytes(tmp_path):
    cfg = DataConfig(n_train=6, n_test=2, n_in=40, n_classes=3, T=30, dt=0.01,
                     cache_dir=str(tmp_path))
    params = synthetic_params(cfg, "train")
    assert "intervals" not in params and "channel_jitter" in params
    train, _ = build_datasets(cfg)
    with h5py.File(train.path) as f:
        h = hashlib.sha1()
        for t, u in zip(f["spikes/times"][:], f["spikes/units"][:]):
            h.update(np.asarray(t, np.float32).tobytes())
            h.update(np.asarray(u, np.uint16).tobytes())
        h.update(f["labels"][:].tobytes())
    # the generator's output for the default options, pinned (changes only on purpose)
    assert h.hexdigest() == PINNED_SHA1


PINNED_SHA1 = "49d3478d1629d07d5c7e40b5a0a9ae857e75465a"
