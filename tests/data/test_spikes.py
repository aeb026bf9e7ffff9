"""SparseSpikes: dense <-> sparse round trips, windows, edge cases, batch stacking."""
import pytest
import torch

from spiketrain.hardware.spikes import SparseSpikes, batch_stack, densify


def _random_train(T=37, B=4, N=20, p=0.1, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(T, B, N, generator=g) < p).float()


def test_round_trip_and_metadata():
    x = _random_train()
    s = SparseSpikes.from_dense(x)
    assert s.shape == x.shape and s.dim() == 3 and (s.T, s.B, s.N) == (37, 4, 20)
    assert s.numel() == x.numel() and len(s) == 37
    assert s.nnz == int(x.sum())
    assert s.rate == pytest.approx(float(x.mean()))
    assert s.nbytes == 8 * (3 * s.nnz + 38)
    torch.testing.assert_close(s.dense(), x, rtol=0, atol=0)
    assert s.dense(dtype=torch.bfloat16).dtype == torch.bfloat16
    # time_ptr: CSR offsets, spikes of step t in [ptr[t], ptr[t+1])
    assert s.time_ptr.shape == (38,)
    assert torch.equal(s.time_ptr.diff(), x.sum((1, 2)).long())
    assert bool((s.times.diff() >= 0).all())


def test_windows_and_slices_match_dense():
    x = _random_train(T=50)
    s = SparseSpikes.from_dense(x)
    for t0, t1 in [(0, 50), (0, 1), (10, 23), (49, 50), (20, 20)]:
        torch.testing.assert_close(s.dense(t0, t1), x[t0:t1], rtol=0, atol=0)
        sl = s.slice(t0, t1)
        assert sl.shape == (t1 - t0, 4, 20)
        torch.testing.assert_close(sl.dense(), x[t0:t1], rtol=0, atol=0)
        assert torch.equal(sl.time_ptr, SparseSpikes.from_dense(x[t0:t1]).time_ptr)
    # slice of a slice, steps, split
    torch.testing.assert_close(s.slice(10, 40).slice(5, 12).dense(), x[15:22], rtol=0, atol=0)
    torch.testing.assert_close(s.step(7), x[7], rtol=0, atol=0)
    pieces = list(s.split(16))
    assert [p.T for p in pieces] == [16, 16, 16, 2]
    torch.testing.assert_close(torch.cat([p.dense() for p in pieces]), x, rtol=0, atol=0)
    with pytest.raises(IndexError):
        s.dense(10, 60)


def test_all_zero_and_all_one():
    z = torch.zeros(6, 3, 5)
    s = SparseSpikes.from_dense(z)
    assert s.nnz == 0 and s.rate == 0.0
    torch.testing.assert_close(s.dense(), z)
    torch.testing.assert_close(s.slice(2, 4).dense(), z[2:4])
    o = torch.ones(6, 3, 5)
    s = SparseSpikes.from_dense(o)
    assert s.nnz == 90 and s.rate == 1.0
    torch.testing.assert_close(s.dense(1, 5), o[1:5])
    assert SparseSpikes.empty(4, 2, 3).dense().abs().sum() == 0


def test_unsorted_input_duplicates_and_validation():
    # unsorted by time, with a duplicate spike: sorted on construction, binary when dense
    s = SparseSpikes([3, 0, 3, 1], [0, 1, 0, 1], [2, 4, 2, 0], (5, 2, 6))
    assert s.times.tolist() == [0, 1, 3, 3]
    d = s.dense()
    assert d.sum() == 3 and d[3, 0, 2] == 1 and d[0, 1, 4] == 1 and d[1, 1, 0] == 1
    with pytest.raises(ValueError, match="units index out of range"):
        SparseSpikes([0], [0], [6], (5, 2, 6))
    with pytest.raises(ValueError, match="one entry per spike"):
        SparseSpikes([0, 1], [0], [0], (5, 2, 6))
    with pytest.raises(TypeError):
        SparseSpikes(torch.tensor([0.5]), [0], [0], (5, 2, 6))


def test_batch_stack_select_counts_and_to():
    xs = [_random_train(T=12, B=1, N=9, seed=i)[:, 0] for i in range(3)]   # [T, N] samples
    dense = torch.stack(xs, 1)
    s = batch_stack([SparseSpikes.from_dense(x.unsqueeze(1)) for x in xs])
    assert s.shape == (12, 3, 9) and bool((s.times.diff() >= 0).all())
    torch.testing.assert_close(s.dense(), dense, rtol=0, atol=0)
    torch.testing.assert_close(batch_stack(xs).dense(), dense, rtol=0, atol=0)
    torch.testing.assert_close(s.select_batch([2, 0]).dense(), dense[:, [2, 0]], rtol=0, atol=0)
    assert torch.equal(s.counts(), dense.sum(0).long())
    assert s.to("cpu") is s
    torch.testing.assert_close(densify(s, 2, 5), dense[2:5])
    torch.testing.assert_close(densify(dense, 2, 5), dense[2:5])


def test_nd_round_trip_windows_and_metadata():
    """Event-camera layout [T, B, 2, H, W]: units index the flattened (2, H, W) features."""
    g = torch.Generator().manual_seed(3)
    x = (torch.rand(30, 3, 2, 8, 8, generator=g) < 0.05).float()
    s = SparseSpikes.from_dense(x)
    assert s.shape == x.shape and s.dim() == s.ndim == 5
    assert s.features == (2, 8, 8) and s.N == 128 and s.numel() == x.numel()
    assert s.nnz == int(x.sum()) and int(s.units.max()) < 128
    torch.testing.assert_close(s.dense(), x, rtol=0, atol=0)
    for t0, t1 in [(0, 30), (4, 17), (29, 30), (5, 5)]:
        torch.testing.assert_close(s.dense(t0, t1), x[t0:t1], rtol=0, atol=0)
        sl = s.slice(t0, t1)
        assert sl.shape == x[t0:t1].shape
        torch.testing.assert_close(sl.dense(), x[t0:t1], rtol=0, atol=0)
    torch.testing.assert_close(s.step(9), x[9], rtol=0, atol=0)
    assert torch.equal(s.counts(), x.sum(0).long())
    torch.testing.assert_close(s.select_batch([2, 0]).dense(), x[:, [2, 0]], rtol=0, atol=0)
    assert s.to("cpu") is s and "(30, 3, 2, 8, 8)" in repr(s)
    # a flat index (p * H + y) * W + x addresses the same event as the 5-d position
    t, b, p, yy, xx = (int(v) for v in x.nonzero()[0])
    assert int(s.units[0]) == (p * 8 + yy) * 8 + xx and (int(s.times[0]), int(s.batch[0])) == (t, b)
    with pytest.raises(ValueError, match="units index out of range"):
        SparseSpikes([0], [0], [128], (4, 1, 2, 8, 8))
    assert SparseSpikes.empty(4, 2, 2, 3, 3).dense().shape == (4, 2, 2, 3, 3)


def test_nd_batch_stack_and_densify():
    g = torch.Generator().manual_seed(4)
    samples = [(torch.rand(10, 2, 4, 4, generator=g) < 0.2).float() for _ in range(3)]  # [T, *f]
    dense = torch.stack(samples, 1)
    s = batch_stack([SparseSpikes.from_dense(x.unsqueeze(1)) for x in samples])
    assert s.shape == (10, 3, 2, 4, 4)
    torch.testing.assert_close(s.dense(), dense, rtol=0, atol=0)
    torch.testing.assert_close(batch_stack(samples, features=3).dense(), dense, rtol=0, atol=0)
    mixed = batch_stack([SparseSpikes.from_dense(dense[:, :2]), samples[2]])  # features from the first
    torch.testing.assert_close(mixed.dense(), dense, rtol=0, atol=0)
    torch.testing.assert_close(densify(s, 3, 7), dense[3:7])
    with pytest.raises(ValueError, match="features"):
        batch_stack([s, SparseSpikes.from_dense(torch.zeros(10, 1, 2, 4, 5))])
