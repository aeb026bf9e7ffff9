"""spike_linear: sparse and dense paths agree (outputs and gradients) at every spike rate."""
import os
import pytest
import numba  # noqa: F401  (a hard dependency: a broken install fails here)
import torch

from spiketrain.hardware import compiled
from spiketrain.hardware.bits import SpikeStore, pack_bits, unpack_bits
from spiketrain.hardware.sparse import (choose_mode, nonzero_index, scatter_grad,
                                        set_sparse_max_rate, spike_linear)
import spiketrain.hardware.sparse as sparse_mod


@pytest.mark.parametrize("rate", [0.0, 0.01, 0.05, 0.2, 0.5, 0.9, 1.0])
def test_sparse_equals_dense(rate):
    g = torch.Generator().manual_seed(int(rate * 100))
    x = (torch.rand(9, 4, 30, generator=g) < rate).float().requires_grad_()
    w = torch.randn(12, 30, generator=g, requires_grad=True)
    gy = torch.randn(9, 4, 12, generator=g)
    res = []
    for mode in ("dense", "sparse"):
        y = spike_linear(x, w, mode)
        res.append((y,) + torch.autograd.grad(y, [x, w], gy))
    for a, b in zip(*res):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-5)
    assert torch.allclose(res[0][0], x @ w.t(), atol=1e-5)


def test_non_binary_values_and_2d():
    x = torch.rand(50, 30) * (torch.rand(50, 30) < 0.1)
    w = torch.randn(8, 30, requires_grad=True)
    y = spike_linear(x, w, "sparse")
    assert torch.allclose(y, x @ w.t(), atol=1e-5)
    gw, = torch.autograd.grad(y.sum(), w)
    assert torch.allclose(gw, torch.ones(50, 8).t() @ x, atol=1e-5)


def test_auto_mode_follows_threshold():
    old = sparse_mod.SPARSE_MAX_RATE
    try:
        set_sparse_max_rate(0.1)
        assert choose_mode(torch.zeros(10, 10)) == "sparse"
        assert choose_mode(torch.ones(10, 10)) == "dense"
        assert choose_mode(torch.ones(10, 10), "sparse") == "sparse"
        with pytest.raises(ValueError, match="mode must be one of"):
            choose_mode(torch.ones(2), "fast")
    finally:
        set_sparse_max_rate(old)


def test_shape_mismatch_message():
    with pytest.raises(ValueError, match="inputs but weight expects"):
        spike_linear(torch.zeros(3, 5), torch.zeros(2, 4))


@pytest.mark.parametrize("shape", [(1,), (7,), (8,), (3, 5, 13), (4, 2, 256)])
def test_bitpack_roundtrip(shape):
    z = torch.rand(shape) < 0.4
    p = pack_bits(z)
    assert p.dtype == torch.uint8 and p.numel() == (z.numel() + 7) // 8
    assert torch.equal(unpack_bits(p, shape), z)
    assert torch.equal(unpack_bits(p, shape, torch.float32), z.float())


def test_bitpack_all_zero_all_one_and_bit_order():
    assert pack_bits(torch.zeros(16, dtype=torch.bool)).tolist() == [0, 0]
    assert pack_bits(torch.ones(16, dtype=torch.bool)).tolist() == [255, 255]
    z = torch.zeros(8, dtype=torch.bool)
    z[0] = z[3] = True
    assert pack_bits(z).tolist() == [1 + 8]


def test_spike_store_sizes_and_ranges():
    z = torch.rand(10, 4, 16) < 0.3
    for storage, nbytes in (("bits", 80), ("bool", 640), ("float", 2560)):
        s = SpikeStore(z.float() if storage == "float" else z, storage)
        assert s.nbytes == nbytes
        assert torch.equal(s.load(torch.float32), z.float())
        assert torch.equal(s.load_range(3, 7, torch.float32), z[3:7].float())


@pytest.mark.skipif(os.environ.get("SPIKETRAIN_KERNELS") == "torch", reason="compiled kernels switched off (SPIKETRAIN_KERNELS=torch)")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bool])
def test_nonzero_index_and_scatter(dtype):
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(50, 40, generator=g) < 0.1)
    x = x.to(dtype) if dtype == torch.bool else x * torch.randint(1, 3, x.shape, generator=g)
    rows, cols, vals = nonzero_index(x)
    nz = x.nonzero()
    assert torch.equal(rows.long(), nz[:, 0]) and torch.equal(cols.long(), nz[:, 1])
    if dtype == torch.bool:
        assert vals is None
    else:
        assert torch.equal(vals, x[nz[:, 0], nz[:, 1]])
    gout = torch.randn(50, 7, generator=g)
    gw = scatter_grad(rows, cols, vals, gout, 40)
    assert torch.allclose(gw, gout.t() @ x.float(), atol=1e-5)
