"""SpikeLoader: deterministic order, exact resume mid-epoch, disjoint equal shards."""
import numpy as np
import pytest
import torch

from spiketrain.data import SHDDataset, SpikeLoader, make_synthetic_shd
from spiketrain.hardware.spikes import SparseSpikes


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    p = make_synthetic_shd(tmp_path_factory.mktemp("loader") / "d.h5", n_samples=30, n_classes=3,
                           n_in=20, duration_s=0.3, seed=0, band_width=4)
    return SHDDataset(p, T=30, dt=0.01, n_in=20)


def _order(loader, n_epochs=1):
    out = []
    for _ in range(n_epochs):
        out.append([tuple(y.tolist()) for _, y in loader])
    return out


def _ids(loader):
    return list(loader.epoch_indices())


def test_batches_shapes_and_sparse(ds):
    dense = list(SpikeLoader(ds, 8, seed=1))
    sparse = list(SpikeLoader(ds, 8, seed=1, sparse=True))
    assert [x.shape[1] for x, _ in dense] == [8, 8, 8, 6]
    x, y = dense[0]
    assert x.shape == (30, 8, 20) and x.dtype == torch.float32 and y.dtype == torch.int64
    for (xd, yd), (xs, ys) in zip(dense, sparse):
        assert isinstance(xs, SparseSpikes) and torch.equal(yd, ys)
        torch.testing.assert_close(xs.dense(), xd, rtol=0, atol=0)
    assert len(SpikeLoader(ds, 8, drop_last=True)) == 3
    assert sum(y.numel() for _, y in SpikeLoader(ds, 8, drop_last=True)) == 24


def test_deterministic_order_per_seed_and_epoch(ds):
    a, b = SpikeLoader(ds, 4, seed=7), SpikeLoader(ds, 4, seed=7)
    assert _ids(a) == _ids(b)
    first = _ids(a)
    list(a)                                   # one epoch: advances to epoch 1
    assert a.epoch == 1 and _ids(a) != first  # a new permutation per epoch
    b.set_epoch(1)
    assert _ids(a) == _ids(b)
    assert _ids(SpikeLoader(ds, 4, seed=8)) != first
    assert _ids(SpikeLoader(ds, 4, shuffle=False)) == list(range(30))
    assert sorted(first) == list(range(30))


def test_resume_mid_epoch_gives_same_remaining_batches(ds):
    ref = SpikeLoader(ds, 4, seed=3)
    ref.set_epoch(2)
    full = [(x, y) for x, y in ref]
    run = SpikeLoader(ds, 4, seed=3)
    run.set_epoch(2)
    it = iter(run)
    for _ in range(3):
        next(it)
    state = run.state_dict()
    assert state["epoch"] == 2 and state["position"] == 3
    resumed = SpikeLoader(ds, 4, seed=3)
    resumed.load_state_dict(state)
    resumed.set_epoch(2)                      # a trainer calling set_epoch keeps the position
    rest = list(resumed)
    assert len(rest) == len(full) - 3
    for (x, y), (xr, yr) in zip(full[3:], rest):
        assert torch.equal(y, yr) and torch.equal(x, xr)
    assert resumed.epoch == 3 and resumed.position == 0
    with pytest.raises(ValueError, match="batch_size"):
        SpikeLoader(ds, 5, seed=3).load_state_dict(state)


def test_shards_disjoint_equal_and_cover(ds):
    w = 4
    loaders = [SpikeLoader(ds, 3, seed=5, rank=r, world_size=w) for r in range(w)]
    for epoch in (0, 1):
        shards = [set(l.epoch_indices(epoch).tolist()) for l in loaders]
        assert all(len(s) == 30 // w for s in shards)
        assert len(set.union(*shards)) == w * (30 // w)       # disjoint
        perm = np.random.default_rng([5, epoch]).permutation(30)[: w * (30 // w)]
        assert set.union(*shards) == set(perm.tolist())      # one shared permutation
    labels = [torch.cat([y for _, y in l]) for l in loaders]
    assert len({len(y) for y in labels}) == 1
    with pytest.raises(ValueError, match="rank"):
        SpikeLoader(ds, 3, rank=4, world_size=4)


def test_generic_dataset_without_get_batch():
    g = torch.Generator().manual_seed(0)
    samples = [((torch.rand(6, 5, generator=g) < 0.3).float(), i % 2) for i in range(5)]
    loader = SpikeLoader(samples, 2, shuffle=False, sparse=True)
    x, y = next(iter(loader))
    torch.testing.assert_close(x.dense(), torch.stack([samples[0][0], samples[1][0]], 1))
    assert y.tolist() == [0, 1]
