"""The opt-in interval task of the synthetic generator: classes differ only in the interval
(seconds) between volleys, not in spike counts or channels."""
import json

import h5py
import numpy as np
import pytest

from spiketrain.data.synthetic import make_synthetic_shd

INTERVALS = [0.02, 0.04, 0.08]


def _read(path):
    with h5py.File(path) as f:
        return ([np.asarray(t) for t in f["spikes/times"][:]],
                [np.asarray(u) for u in f["spikes/units"][:]], f["labels"][:],
                json.loads(f.attrs["generator"]))


def test_volleys_are_spaced_by_the_class_interval(tmp_path):
    path = make_synthetic_shd(tmp_path / "iv.h5", n_samples=30, n_classes=3, n_in=140,
                              duration_s=0.4, intervals=INTERVALS, noise_rate=0.0,
                              jitter=0.0, event_width=0.0005, signal_rate=2000.0)
    times, units, labels, meta = _read(path)
    assert meta["intervals"] == INTERVALS
    for t, u, y in zip(times, units, labels):
        assert t.size > 0 and np.all(np.diff(t) >= 0) and len(np.unique(u)) < 30
        # three clusters of spike times (1 ms grid), spaced by the class interval
        cuts = np.flatnonzero(np.diff(t) > 0.005)
        clusters = np.split(t, cuts + 1)
        assert len(clusters) == 3
        gaps = np.diff([c.mean() for c in clusters])
        np.testing.assert_allclose(gaps, INTERVALS[y], atol=0.0015)


def test_spike_counts_and_channels_carry_no_class(tmp_path):
    path = make_synthetic_shd(tmp_path / "iv.h5", n_samples=300, n_classes=3, n_in=140,
                              duration_s=0.4, intervals=INTERVALS, signal_rate=400.0,
                              event_width=0.003, jitter=0.002)
    times, units, labels, _ = _read(path)
    counts = np.array([t.size for t in times])
    means = [counts[labels == c].mean() for c in range(3)]
    assert max(means) / min(means) < 1.15, means
    centre = np.array([np.median(u) for u in units])
    per_class = [np.mean(centre[labels == c]) for c in range(3)]
    assert np.ptp(per_class) < 15, per_class   # bands drawn per sample, not per class


def test_interval_option_is_checked(tmp_path):
    with pytest.raises(ValueError, match="one positive interval"):
        make_synthetic_shd(tmp_path / "a.h5", n_samples=4, n_classes=3, intervals=[0.02, 0.04])
    with pytest.raises(ValueError, match="do not fit"):
        make_synthetic_shd(tmp_path / "b.h5", n_samples=4, n_classes=2, duration_s=0.1,
                           intervals=[0.02, 0.08])


def test_default_files_do_not_record_the_option(tmp_path):
    _, _, _, meta = _read(make_synthetic_shd(tmp_path / "d.h5", n_samples=4, n_classes=2,
                                             n_in=20, duration_s=0.2))
    assert "intervals" not in meta
