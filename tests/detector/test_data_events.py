"""Event windows to tensors, the Gen1 box filter, the synthetic recordings, data kinds."""
import os

import numpy as np
import pytest
import torch

from spiketrain.data.event_synth import cached_event_recordings, make_recording
from spiketrain.data.event_tensors import box_targets, event_keys, filter_boxes, histogram
from spiketrain.data.events import (EventDataConfig, EventDetectionDataset, build_event_datasets,
                                    recording_pairs)
from spiketrain.data.gen1_format import BBOX_DTYPE, DatFile, read_bbox, write_bbox, write_dat
from spiketrain.data.kinds import get_data_kind

SMALL = dict(width=96, height=64, duration_s=1.5, max_objects=2, noise_rate=0.2)


def boxes_at(ts, x=10, y=10, w=40, h=30, cls=0):
    b = np.zeros(len(ts), dtype=BBOX_DTYPE)
    b["t"], b["x"], b["y"], b["w"], b["h"], b["class_id"] = ts, x, y, w, h, cls
    return b


def test_histogram_counts_equal_raw_event_counts():
    rng = np.random.default_rng(0)
    n, T, bin_us, W, H = 4000, 10, 5000, 37, 23
    t = np.sort(rng.integers(0, T * bin_us, n)) + 1_000_000
    x, y, p = rng.integers(0, W, n), rng.integers(0, H, n), rng.integers(0, 2, n)
    b, f = event_keys(t, x, y, p, 1_000_000, bin_us, T, H, W)
    hist = histogram([b], [f], T, H, W)
    assert hist.shape == (T, 1, 2, H, W) and hist.dtype == torch.float32
    assert int(hist.sum()) == n
    # every cell holds exactly the number of raw events in it (counted by hand)
    expect = np.zeros((T, 2, H, W))
    for ti, xi, yi, pi in zip(t, x, y, p):
        expect[(ti - 1_000_000) // bin_us, pi, yi, xi] += 1
    np.testing.assert_array_equal(hist[:, 0].numpy(), expect)
    assert hist.max() > 1                       # several events per cell are counted, not clipped
    assert histogram([b], [f], T, H, W, binary=True).max() == 1


def test_histogram_downsampled_and_window_edges():
    t = np.array([99, 100, 100 + 4999, 100 + 5000, 100 + 49_999, 100 + 50_000])
    x = np.array([0, 3, 4, 7, 8, 8])
    y = np.array([0, 1, 2, 3, 5, 5])
    p = np.array([1, 0, 1, 1, 0, 0])
    b, f = event_keys(t, x, y, p, 100, 5000, 10, H=3, W=5, factor=2)
    hist = histogram([b], [f], 10, 3, 5)
    # 99 is before the window, 100 + 50000 after it; the other four fall in bins 0, 0, 1, 9
    assert int(hist.sum()) == 4
    assert hist[0, 0, 0, 0, 1] == 1 and hist[0, 0, 1, 1, 2] == 1    # (x//2, y//2)
    assert hist[1, 0, 1, 1, 3] == 1 and hist[9, 0, 0, 2, 4] == 1


def test_batch_histogram_matches_per_sample(tmp_path):
    folder = cached_event_recordings(tmp_path, 2, seed=5, **SMALL)
    ds = EventDetectionDataset(recording_pairs(folder), downsample=2, min_box_diag=0,
                               min_box_side=0, skip_first_s=0.2)
    idx = [0, len(ds) // 2, len(ds) - 1]
    x, targets = ds.get_batch(idx)
    assert x.shape == (10, 3, 2, 32, 48) and len(targets) == 3
    for j, i in enumerate(idx):
        t, *_ = ds.window_events(i)
        assert int(x[:, j].sum()) == len(t) > 0          # every event of the window, once
        xi, ti = ds[i]
        torch.testing.assert_close(xi[:, 0], x[:, j])
        torch.testing.assert_close(ti, targets[j])
    sp, _ = ds.get_batch(idx, sparse=True)
    assert tuple(sp.shape) == tuple(x.shape)
    dense = sp.dense()
    torch.testing.assert_close(dense, (x > 0).float())   # SparseSpikes: binary, same cells


def test_gen1_box_filter():
    b = np.zeros(6, dtype=BBOX_DTYPE)
    b["t"] = [400_000, 600_000, 600_000, 600_000, 600_000, 600_000]
    b["w"] = [50, 50, 25, 9, 40, 21]
    b["h"] = [50, 50, 15, 60, 10, 21]            # diag: 70.7, 70.7, 29.2, 60.7, 41.2, 29.7
    kept = filter_boxes(b)
    assert kept["w"].tolist() == [50, 40]          # skip < 0.5 s, diag < 30, a side < 10
    assert len(filter_boxes(b, skip_first_us=0, min_diag=0, min_side=0)) == 6
    assert filter_boxes(b, min_diag=20, min_side=0)["w"].tolist() == [50, 25, 9, 40, 21]


def test_box_targets_clip_and_scale():
    b = boxes_at([0, 0, 0], x=[-10, 100, 310], y=[20, 200, 10], w=[40, 50, 30], h=[10, 60, 5],
                 cls=[1, 0, 1])
    out = box_targets(b, width=304, height=240, factor=2)
    # first box clipped on the left, second at the bottom, third lies outside: dropped
    torch.testing.assert_close(out, torch.tensor([[1, 0, 10, 15, 5], [0, 50, 100, 25, 20]],
                                                 dtype=torch.float32))


def test_dataset_samples_follow_filter_and_window(tmp_path):
    rng = np.random.default_rng(1)
    t = np.sort(rng.integers(0, 2_000_000, 3000))
    write_dat(tmp_path / "r_td.dat", t, rng.integers(0, 304, 3000), rng.integers(0, 240, 3000),
              rng.integers(0, 2, 3000))
    ts = [40_000, 300_000, 550_000, 550_000, 1_000_000, 1_500_000]
    b = boxes_at(ts, w=[40, 40, 40, 5, 40, 40])
    write_bbox(tmp_path / "r_bbox.npy", b, legacy=True)
    ds = EventDetectionDataset(recording_pairs(tmp_path))
    assert [s[1] for s in ds.index] == [550_000, 1_000_000, 1_500_000]
    assert ds[0][1].shape == (1, 5)                  # the 5-px-wide box is filtered out
    ds0 = EventDetectionDataset(recording_pairs(tmp_path), skip_first_s=0, min_box_diag=0,
                                min_box_side=0)
    # the first label has no full 50 ms window before it: no sample
    assert [s[1] for s in ds0.index] == [300_000, 550_000, 1_000_000, 1_500_000]
    assert ds0[1][1].shape == (2, 5)
    assert len(EventDetectionDataset(recording_pairs(tmp_path), max_samples=2)) == 2


def test_synthetic_recording_is_deterministic_and_polarised(tmp_path):
    a = make_recording([3, 0], **SMALL)
    b = make_recording([3, 0], **SMALL)
    for u, v in zip(a[:4], b[:4]):
        np.testing.assert_array_equal(u, v)
    np.testing.assert_array_equal(a[4], b[4])
    c = make_recording([3, 1], **SMALL)
    assert len(c[0]) != len(a[0])
    t, x, y, p, boxes = a
    assert (np.diff(t) >= 0).all() and x.max() < 96 and y.max() < 64
    assert set(np.unique(boxes["class_id"])) <= {0, 1}
    assert (np.diff(np.unique(boxes["t"])) == 50_000).all()


def test_synthetic_edges_on_leading_off_trailing():
    """On the vertical sides of a car (a rectangle), the polarity is the sign of the side's
    outward speed: ON where the edge advances, OFF where it retreats (boxes every 1 ms give
    the true edge motion)."""
    agree, n = 0, 0
    for seed in range(16):
        t, x, y, p, boxes = make_recording([seed, 7], width=96, height=64, duration_s=0.6,
                                           max_objects=1, noise_rate=0.0, box_period_ms=1.0)
        if boxes["class_id"][0] != 0:
            continue
        k = np.clip(t // 1000, 1, len(boxes) - 2)          # box row k-1 is step k
        b0, b1, b2 = boxes[k - 2], boxes[k - 1], boxes[k]
        cx = b1["x"] + b1["w"] / 2
        cy = b1["y"] + b1["h"] / 2
        vx = (b2["x"] + b2["w"] / 2) - (b0["x"] + b0["w"] / 2)
        dw = b2["w"] - b0["w"]
        side = np.sign(x + 0.5 - cx)
        on_side = (np.abs(x + 0.5 - cx) > b1["w"] / 2 - 1.5) & (np.abs(y + 0.5 - cy) < b1["h"] / 2 - 2)
        vn = side * vx + dw / 2
        sel = on_side & (np.abs(vn) > 0.02)
        agree += int(((vn[sel] > 0) == (p[sel] == 1)).sum())
        n += int(sel.sum())
    assert n > 500 and agree / n > 0.9, (agree, n)


def test_cached_recordings_reused_and_readable(tmp_path):
    f1 = cached_event_recordings(tmp_path, 2, seed=0, **SMALL)
    mtime = os.path.getmtime(os.path.join(f1, "rec_0000_td.dat"))
    assert cached_event_recordings(tmp_path, 2, seed=0, **SMALL) == f1
    assert os.path.getmtime(os.path.join(f1, "rec_0000_td.dat")) == mtime
    assert cached_event_recordings(tmp_path, 2, seed=1, **SMALL) != f1
    d = DatFile(os.path.join(f1, "rec_0001_td.dat"))
    assert (d.width, d.height) == (96, 64) and len(d) > 1000
    assert len(read_bbox(os.path.join(f1, "rec_0001_bbox.npy"))) > 0


def test_data_kinds_and_config(tmp_path):
    kind = get_data_kind("events")
    assert kind.task == "detection" and kind.config is EventDataConfig
    assert get_data_kind("gen1").task == "detection"
    cfg = EventDataConfig(cache_dir=str(tmp_path), n_train=2, n_test=1, downsample=2,
                          min_box_diag=0, min_box_side=0, **SMALL)
    train, test = kind.build(cfg)
    assert isinstance(train, EventDetectionDataset) and len(test) > 0
    assert train.shape == (2, 32, 48) and train.T == 10
    with pytest.raises(ValueError, match="data.bins"):
        EventDataConfig(bins=0)
    with pytest.raises(ValueError, match="data.path"):
        EventDataConfig(kind="gen1")
    with pytest.raises(ValueError, match="data.bin_ms"):
        EventDataConfig(bin_ms=0.0005)
    g = build_event_datasets(dict(kind="gen1", path=train.files[0].path.rsplit("/", 1)[0]))[0]
    assert len(g) > 0 and g.shape == (2, 64, 96)


def test_dataset_bounds_open_recordings(tmp_path):
    folder = cached_event_recordings(tmp_path, 5, seed=2, **SMALL)
    ds = EventDetectionDataset(recording_pairs(folder), min_box_diag=0, min_box_side=0,
                               max_open=2)
    ref = EventDetectionDataset(recording_pairs(folder), min_box_diag=0, min_box_side=0)
    idx = list(range(0, len(ds), 7))
    for i in idx:
        torch.testing.assert_close(ds[i][0], ref[i][0])
        assert sum(f.is_open for f in ds.files) <= 2
    assert len({ds.index[i][0] for i in idx}) == 5     # every recording was visited


def test_no_windows_left_is_one_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no labelled window is left after the box filter"):
        build_event_datasets(dict(cache_dir=str(tmp_path), n_train=1, n_test=0,
                                  min_box_diag=10_000, **SMALL))
