"""The compiled kernels run batch rows (or accumulator rows / columns) in parallel on
``torch.get_num_threads()`` threads; the result is bit-identical to one thread."""
import os
import pytest
import numba  # noqa: F401  (a hard dependency: a broken install fails here)
import torch

from spiketrain.hardware.compiled import available, numba
from spiketrain.hardware.sparse import nonzero_index, scatter_grad
from spiketrain.models.snn import lif_numba, lif_sparse_numba

# numba is a hard dependency: without it these tests fail (import error), never skip
pytestmark = pytest.mark.skipif(os.environ.get("SPIKETRAIN_KERNELS") == "torch", reason="compiled kernels switched off (SPIKETRAIN_KERNELS=torch)")
THREADS = min(4, numba.config.NUMBA_NUM_THREADS) if numba is not None else 1


@pytest.fixture
def threads():
    before = torch.get_num_threads()

    def run(n, fn):
        torch.set_num_threads(n)
        try:
            return fn()
        finally:
            torch.set_num_threads(before)
    return run


def _both(threads, fn):
    if THREADS < 2:
        pytest.skip("numba has one thread here")
    one = threads(1, fn)
    many = threads(THREADS, fn)
    assert lif_numba.numba.get_num_threads() >= 1
    return one, many


@pytest.mark.parametrize("alif,reset", [(False, "subtract"), (False, "zero"), (True, "subtract")])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_membrane_block_threads(threads, alif, reset, dtype):
    torch.manual_seed(0)
    n, B, H = 40, 7, 33
    cur = torch.randn(n, B, H, dtype=dtype) * 0.6
    wt = (torch.randn(H, H, dtype=dtype) * 0.3).t().contiguous()

    def run(replay_spikes=None):
        v, z = torch.zeros(B, H, dtype=dtype), torch.zeros(B, H, dtype=dtype)
        a = torch.zeros(B, H, dtype=dtype) if alif else None
        spikes = replay_spikes.clone() if replay_spikes is not None else torch.empty(n, B, H, dtype=torch.bool)
        sg = torch.empty(n, B, H, dtype=dtype)
        vs, thrs = lif_numba.membrane_block(
            cur, wt, v, a, z, spikes, beta=0.95, threshold=1.0, reset=reset, rho=0.99,
            adapt=0.2, replay=replay_spikes is not None, keep_v=True, keep_thr=alif, out_sg=sg,
            cut=0.4)
        return [spikes, vs, sg, v, z] + ([thrs, a] if alif else [])

    one, many = _both(threads, run)
    assert 0 < int(one[0].sum()) < one[0].numel()
    for p, q in zip(one, many):
        assert torch.equal(p, q)
    replayed = threads(THREADS, lambda: run(one[0]))
    for p, q in zip(one, replayed):
        assert torch.equal(p, q)


def test_recurrent_grad_threads(threads):
    torch.manual_seed(1)
    z = torch.rand(30, 6, 50) < 0.1
    g = torch.randn(30, 6, 50)

    def run():
        acc = torch.zeros(50, 50)
        lif_numba.recurrent_grad(acc, z, g)
        return acc
    one, many = _both(threads, run)
    assert torch.equal(one, many)
    assert torch.allclose(one.t(), g.reshape(-1, 50).t() @ z.reshape(-1, 50).float(), atol=1e-5)


def test_sparse_backward_kernel_threads(threads):
    torch.manual_seed(2)
    n, B, H = 25, 5, 40
    gz = torch.randn(n, B, H)
    sg = torch.rand(n, B, H) * (torch.rand(n, B, H) < 0.2)
    w_back = torch.randn(H, H) * 0.2
    cv0 = torch.randn(B, H)
    P0 = cv0 @ w_back

    def run():
        cv, cz, gI = cv0.clone(), torch.zeros(B, H), torch.empty(n, B, H)
        P = P0.clone()
        lif_sparse_numba.lif_backward_sparse(gz, sg, w_back, cv, cz, P, gI, 0.9, 1.0)
        return gI, cv, cz, P
    one, many = _both(threads, run)
    for p, q in zip(one, many):
        assert torch.equal(p, q)


@pytest.mark.parametrize("binary", [True, False])
def test_input_scatter_threads(threads, binary):
    torch.manual_seed(3)
    x = (torch.rand(200, 70) < 0.05).float()
    if not binary:
        x = x * torch.rand(200, 70)
    rows, cols, vals = nonzero_index(x, binary if binary else None)
    g = torch.randn(200, 37)
    one, many = _both(threads, lambda: scatter_grad(rows, cols, vals, g, 70))
    assert torch.equal(one, many)
    assert torch.allclose(one, g.t() @ x, atol=1e-5)


def test_sparse_backward_kernel_matches_dense_recursion_across_blocks(threads):
    """The neuron-major product over the active neurons, carried over several calls (blocks),
    equals the dense recursion ``gv = gz sg + cv``, ``cz = gv W_back`` written in torch."""
    torch.manual_seed(4)
    n, B, H, beta = 30, 6, 45, 0.9
    gz = torch.randn(3 * n, B, H, dtype=torch.float64)
    sg = torch.rand(3 * n, B, H, dtype=torch.float64) * (torch.rand(3 * n, B, H) < 0.15)
    w_back = torch.randn(H, H, dtype=torch.float64) * 0.2
    cv0 = torch.randn(B, H, dtype=torch.float64)
    P0 = cv0 @ w_back  # outside run(): torch's matmul may round differently per thread count

    def run():
        cv, cz, P = cv0.clone(), torch.zeros(B, H, dtype=torch.float64), P0.clone()
        gI = torch.empty(3 * n, B, H, dtype=torch.float64)
        for t0 in (2 * n, n, 0):  # blocks in reverse, state carried between calls
            lif_sparse_numba.lif_backward_sparse(gz[t0:t0 + n], sg[t0:t0 + n], w_back, cv, cz, P,
                                          gI[t0:t0 + n], beta, 1.0)
        return gI, cv, cz
    one, many = _both(threads, run)
    for p, q in zip(one, many):
        assert torch.equal(p, q)
    cv, cz = cv0.clone(), torch.zeros(B, H, dtype=torch.float64)
    ref = torch.empty_like(gz)
    for t in range(3 * n - 1, -1, -1):  # cz_{t-1} = gv_t W_back, cv = beta gv_t
        gv = (gz[t] + cz) * sg[t] + cv
        ref[t] = gv
        cz, cv = gv @ w_back, beta * gv
    assert torch.allclose(one[0], ref, rtol=1e-12, atol=1e-12)
    assert torch.allclose(one[2], cz, rtol=1e-12, atol=1e-12)


def test_input_scatter_accumulates_into_out(threads):
    torch.manual_seed(5)
    x1, x2 = ((torch.rand(120, 60) < 0.05).float() for _ in range(2))
    g1, g2 = torch.randn(120, 33), torch.randn(120, 33)
    i1, i2 = nonzero_index(x1, True), nonzero_index(x2, True)

    def run():
        acc = torch.zeros(60, 33)
        scatter_grad(*i1, g1, 60, out=acc)
        back = scatter_grad(*i2, g2, 60, out=acc)
        assert back.data_ptr() == acc.data_ptr()
        return acc
    one, many = _both(threads, run)
    assert torch.equal(one, many)
    assert torch.allclose(one.t(), g1.t() @ x1 + g2.t() @ x2, atol=1e-5)


@pytest.mark.parametrize("H", [40, 37])  # 8-byte words of spikes, and a ragged tail
def test_readout_current_threads(threads, H):
    from spiketrain.models.snn.readout import spike_current
    torch.manual_seed(6)
    z = torch.rand(30, 5, H) < 0.1
    w = torch.randn(7, H)
    one, many = _both(threads, lambda: spike_current(z, w))
    assert torch.equal(one, many)
    assert torch.allclose(one, z.float() @ w.t(), atol=1e-5)
