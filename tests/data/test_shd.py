"""SHD reader: published layout, binning semantics, round trip of generated files."""
import h5py
import numpy as np
import pytest
import torch

from spiketrain.data import SHDDataset, bin_spikes, make_synthetic_shd


def _write_shd(path, times, units, labels):
    with h5py.File(path, "w") as f:
        g = f.create_group("spikes")
        t = g.create_dataset("times", (len(times),), dtype=h5py.vlen_dtype(np.float32))
        u = g.create_dataset("units", (len(units),), dtype=h5py.vlen_dtype(np.uint16))
        for i, (ti, ui) in enumerate(zip(times, units)):
            t[i] = np.asarray(ti, np.float32)
            u[i] = np.asarray(ui, np.uint16)
        f.create_dataset("labels", data=np.asarray(labels, np.uint8))


def test_binning_semantics(tmp_path):
    # dt = 10 ms, T = 5 steps (50 ms). Edges: 0.00 -> 0, 0.0099 -> 0, 0.01 -> 1 (grid point),
    # two spikes of unit 2 in step 3 -> one, 0.05 (step 5 = T) and 0.2 dropped.
    times = [[0.0, 0.0099, 0.01, 0.031, 0.039, 0.049, 0.05, 0.2]]
    units = [[0, 1, 1, 2, 2, 3, 3, 3]]
    p = tmp_path / "tiny.h5"
    _write_shd(p, times, units, [1])
    ds = SHDDataset(p, T=5, dt=0.01, n_in=4, n_classes=2)
    x, y = ds.get_batch([0])
    expected = torch.zeros(5, 1, 4)
    for t, u in [(0, 0), (0, 1), (1, 1), (3, 2), (4, 3)]:
        expected[t, 0, u] = 1
    torch.testing.assert_close(x, expected, rtol=0, atol=0)
    assert y.tolist() == [1] and y.dtype == torch.int64
    s, label = ds[0]
    assert label == 1 and s.shape == (5, 1, 4)
    torch.testing.assert_close(s.dense(), expected, rtol=0, atol=0)
    # a coarser dt merges steps; a longer T keeps the late spikes
    keys = bin_spikes(times[0], units[0], T=100, dt=0.01, n_in=4)
    assert (keys // 4).tolist() == [0, 0, 1, 3, 4, 5, 20]


def test_round_trip_counts_per_neuron(tmp_path):
    dt, T, n_in = 0.005, 60, 24
    p = make_synthetic_shd(tmp_path / "syn.h5", n_samples=12, n_classes=3, n_in=n_in,
                           duration_s=T * dt, seed=3, resolution=dt, noise_rate=20.0,
                           band_width=6, channel_jitter=2)
    ds = SHDDataset(p, T=T, dt=dt, n_in=n_in)
    assert len(ds) == 12 and ds.n_classes == 3
    with h5py.File(p, "r") as f:
        units = f["spikes/units"][:]
        times = f["spikes/times"][:]
        labels = f["labels"][:]
        assert f["spikes/times"].dtype.metadata["vlen"] == np.float32
        assert f["spikes/units"].dtype.metadata["vlen"] == np.uint16
    x, y = ds.get_batch(np.arange(12))
    assert torch.equal(y, torch.as_tensor(labels, dtype=torch.int64))
    total = 0
    for i in range(12):
        raw = np.bincount(units[i].astype(np.int64), minlength=n_in)
        assert np.array_equal(raw, x[:, i].sum(0).numpy().astype(np.int64)), f"sample {i}"
        # and each spike lands in its own grid step
        steps = np.rint(times[i] / dt).astype(np.int64)
        assert np.array_equal(np.sort(steps * n_in + units[i]), ds.sample_keys(i))
        total += len(units[i])
    assert total > 12 * 20


def test_sparse_batch_matches_dense(tmp_path):
    p = make_synthetic_shd(tmp_path / "s.h5", n_samples=8, n_classes=2, n_in=30, duration_s=0.4,
                           seed=1)
    ds = SHDDataset(p, T=40, dt=0.01, n_in=30)
    x, y = ds.get_batch([5, 1, 7])
    s, y2 = ds.get_batch([5, 1, 7], sparse=True)
    assert torch.equal(y, y2) and bool((s.times.diff() >= 0).all())
    torch.testing.assert_close(s.dense(), x, rtol=0, atol=0)
    assert ds.rate > 0


def test_reader_errors(tmp_path):
    p = tmp_path / "bad_unit.h5"
    _write_shd(p, [[0.0]], [[700]], [0])
    with pytest.raises(ValueError, match="n_in"):
        SHDDataset(p, n_in=700)
    p = tmp_path / "bad_label.h5"
    _write_shd(p, [[0.0]], [[1]], [25])
    with pytest.raises(ValueError, match="n_classes"):
        SHDDataset(p, n_classes=20)
    p = tmp_path / "not_shd.h5"
    with h5py.File(p, "w") as f:
        f.create_dataset("labels", data=np.zeros(2))
    with pytest.raises(ValueError, match="spikes/times"):
        SHDDataset(p)
    with pytest.raises(FileNotFoundError):
        SHDDataset(tmp_path / "missing.h5")


# ---------------------------------------------------------------------------- bad files
def _write_raw(path, times, units, labels, t_dtype=np.float32, u_dtype=np.int32):
    """An SHD-layout file with the given dtypes (wider than the published ones, to hold
    negative unit ids or float labels)."""
    with h5py.File(path, "w") as f:
        g = f.create_group("spikes")
        t = g.create_dataset("times", (len(times),), dtype=h5py.vlen_dtype(t_dtype))
        u = g.create_dataset("units", (len(units),), dtype=h5py.vlen_dtype(u_dtype))
        for i, (ti, ui) in enumerate(zip(times, units)):
            t[i] = np.asarray(ti, t_dtype)
            u[i] = np.asarray(ui, u_dtype)
        f.create_dataset("labels", data=np.asarray(labels))


GOOD_T = [[0.0, 0.01, 0.02], [0.005, 0.03]]
GOOD_U = [[0, 1, 2], [3, 1]]


@pytest.mark.parametrize("times,units,labels,fragment", [
    (GOOD_T, [[0, -1, 2], [3, 1]], [0, 1], "negative unit id -1"),
    (GOOD_T, [[0, 1, 9], [3, 1]], [0, 1], "unit id 9 >= n_in=4"),
    (GOOD_T, GOOD_U, [0], "1 labels, 2 spikes/times"),
    (GOOD_T, GOOD_U, [0, 1, 1], "3 labels, 2 spikes/times"),
    (GOOD_T, GOOD_U, [0.0, 1.7], "labels must be integers"),
    (GOOD_T, GOOD_U, [[0, 1], [1, 0]], "labels must be a 1-D array"),
    (GOOD_T, GOOD_U, [0, -3], "negative label"),
    ([[0.0, 0.01], [0.005, 0.03]], GOOD_U, [0, 1], "sample 0 has (2,) times and (3,) units"),
])
def test_bad_fields_are_refused_naming_the_file(tmp_path, times, units, labels, fragment):
    p = tmp_path / "bad.h5"
    _write_raw(p, times, units, labels)
    with pytest.raises(ValueError) as err:
        SHDDataset(p, T=5, dt=0.01, n_in=4, n_classes=2 if fragment != "negative label" else None)
    msg = str(err.value)
    assert fragment in msg and str(p) in msg and "\n" not in msg, msg


def test_float_units_are_refused(tmp_path):
    p = tmp_path / "fu.h5"
    _write_raw(p, GOOD_T, [[0.5, 1, 2], [3, 1]], [0, 1], u_dtype=np.float32)
    with pytest.raises(ValueError, match="unit ids must be integers"):
        SHDDataset(p, T=5, dt=0.01, n_in=4)


def test_non_finite_and_negative_times_dropped_and_counted(tmp_path):
    p = tmp_path / "nan.h5"
    _write_raw(p, [[0.0, np.nan, 0.02, np.inf], [-0.01, 0.03]], [[0, 1, 2, 3], [3, 1]], [0, 1])
    with pytest.warns(UserWarning, match="dropped 2 events with non-finite times and 1 with"):
        ds = SHDDataset(p, T=5, dt=0.01, n_in=4)
    assert ds.dropped == {"non_finite": 2, "negative_time": 1}
    x, _ = ds.get_batch([0, 1])
    assert x.sum().item() == 3                      # (0, u0), (2, u2), (3, u1)
    assert x[0, 0, 0] == 1 and x[2, 0, 2] == 1 and x[3, 1, 1] == 1


def test_huge_times_do_not_wrap_into_valid_steps():
    keys = bin_spikes([1e30, 0.0], [1, 2], T=5, dt=0.01, n_in=4)
    assert keys.tolist() == [2]


@pytest.mark.parametrize("damage", ["header", "truncate", "empty", "text"])
def test_damaged_file_is_one_line_naming_it(tmp_path, damage):
    p = make_synthetic_shd(tmp_path / "ok.h5", n_samples=6, n_classes=2, n_in=20,
                           duration_s=0.1, seed=1, band_width=4)
    data = bytearray(open(p, "rb").read())
    if damage == "header":
        data[:8] = b"\0" * 8
    elif damage == "truncate":
        data = data[: len(data) // 3]
    elif damage == "empty":
        data = bytearray()
    else:
        data = bytearray(b"spikes,units\n1,2\n")
    open(p, "wb").write(bytes(data))
    with pytest.raises(ValueError) as err:
        SHDDataset(p, T=10, dt=0.01, n_in=20)
    assert str(p) in str(err.value) and "\n" not in str(err.value)


def test_missing_dataset_and_wrong_layout(tmp_path):
    p = tmp_path / "m.h5"
    with h5py.File(p, "w") as f:
        f.create_dataset("labels", data=np.zeros(2, np.int64))
    with pytest.raises(ValueError, match="lacks dataset 'spikes/times'"):
        SHDDataset(p)
    with h5py.File(p, "w") as f:
        f.create_dataset("spikes/times", data=np.zeros((2, 3), np.float32))
        f.create_dataset("spikes/units", data=np.zeros((2, 3), np.int32))
        f.create_dataset("labels", data=np.zeros(2, np.int64))
    with pytest.raises(ValueError, match="one array per sample"):
        SHDDataset(p)
