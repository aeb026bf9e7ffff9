"""RSNN.chunk (fused) must equal looping step(): forward close, gradients to 1e-5. The
reference is plain autograd through ``step``; the fused chunk runs its compiled kernels (numba)
or, with ``SPIKETRAIN_KERNELS=torch`` (what runs on CUDA), its eager PyTorch ops."""
import itertools

import pytest
import torch

from spiketrain.hardware.compiled import ENV
from spiketrain.models import RSNN
from spiketrain.models.snn.surrogates import SURROGATE_GRADS


def _grads(model, x, fused, loop_steps):
    model.fused = fused
    st0 = model.init_state(x.shape[1])
    g = torch.Generator().manual_seed(3)
    # non-zero initial state that requires grad (segments of a strategy start like this)
    state = tuple(tuple((torch.rand(t.shape, generator=g) * (0.5 if i < len(h) - 1 else 0) +
                         (torch.rand(t.shape, generator=g) < 0.3).float() * (i == len(h) - 1))
                        .requires_grad_() for i, t in enumerate(h)) for h in st0[:-1])
    state = state + (torch.randn(st0[-1].shape, generator=g).requires_grad_(),)
    if loop_steps:
        ys, s = [], state
        for x_t in x.unbind(0):
            s, y = model.step(s, x_t)
            ys.append(y)
        y, final = torch.stack(ys), s
    else:
        final, y = model.chunk(state, x)
    w = torch.randn(y.shape, generator=g)
    loss = (y * w).sum() + sum((t * (1.0 + i)).sum() for h in final[:-1] for i, t in enumerate(h))
    loss = loss + (final[-1] ** 2).sum()
    leaves = [t for h in state[:-1] for t in h] + [state[-1]]
    wrt = list(model.parameters()) + leaves + ([x] if x.requires_grad else [])
    return y, final, torch.autograd.grad(loss, wrt, allow_unused=True)


def _check(model, x):
    y0, f0, g0 = _grads(model, x, fused=False, loop_steps=True)
    y1, f1, g1 = _grads(model, x, fused=True, loop_steps=False)
    assert torch.allclose(y0, y1, atol=1e-5, rtol=1e-5), (y0 - y1).abs().max()
    for a, b in zip(torch.utils._pytree.tree_leaves(f0), torch.utils._pytree.tree_leaves(f1)):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-5)
    for a, b in zip(g0, g1):
        if a is None:
            assert b is None or b.abs().max() == 0
            continue
        err = ((a - b).abs().max() / a.abs().max().clamp_min(1e-6)).item()
        assert err < 1e-5, err


CASES = list(itertools.product(["lif", "alif"], ["subtract", "zero"], [1, 2], [True, False]))


@pytest.mark.parametrize("neuron,reset,layers,recurrent", CASES)
def test_chunk_equals_step_loop(neuron, reset, layers, recurrent):
    torch.manual_seed(0)
    m = RSNN(n_in=20, hidden=16, n_out=5, layers=layers, neuron=neuron, reset=reset,
             recurrent=recurrent, sparse="dense")
    x = (torch.rand(50, 4, 20) < 0.2).float()
    _check(m, x)


@pytest.mark.parametrize("neuron,reset,layers,recurrent",
                         [c for c in CASES if c[2] == 2 or not c[3]])
def test_eager_torch_chunk_equals_step_loop(neuron, reset, layers, recurrent, monkeypatch):
    """The eager PyTorch fused path (no compiled kernels) against autograd through step."""
    monkeypatch.setenv(ENV, "torch")
    torch.manual_seed(0)
    m = RSNN(n_in=20, hidden=16, n_out=5, layers=layers, neuron=neuron, reset=reset,
             recurrent=recurrent, sparse="sparse")
    m.fused_block = 13
    _check(m, (torch.rand(50, 4, 20) < 0.2).float())


@pytest.mark.parametrize("surrogate", sorted(SURROGATE_GRADS))
def test_all_surrogates(surrogate):
    torch.manual_seed(1)
    m = RSNN(n_in=20, hidden=16, n_out=5, neuron="alif", surrogate=surrogate)
    _check(m, (torch.rand(40, 4, 20) < 0.2).float())


@pytest.mark.parametrize("storage,sparse,block", [("bits", "sparse", 7), ("bool", "sparse", 256),
                                                  ("float", "dense", 13), ("bits", "dense", 1)])
def test_storage_sparse_and_blocks(storage, sparse, block):
    torch.manual_seed(2)
    m = RSNN(n_in=20, hidden=16, n_out=5, layers=2, spike_storage=storage, sparse=sparse)
    m.fused_block = block
    _check(m, (torch.rand(45, 4, 20) < 0.1).float())


def test_input_gradient_and_real_valued_input():
    torch.manual_seed(4)
    m = RSNN(n_in=20, hidden=16, n_out=5, layers=2, sparse="sparse")
    x = torch.rand(30, 4, 20) * (torch.rand(30, 4, 20) < 0.1)  # sparse but not binary
    _check(m, x.requires_grad_())


def test_sparse_spikes_input_matches_dense():
    from spiketrain.hardware import spikes
    torch.manual_seed(5)
    m = RSNN(n_in=20, hidden=16, n_out=5, sparse="sparse")
    x = (torch.rand(40, 4, 20) < 0.05).float()
    s = spikes.SparseSpikes.from_dense(x)
    st = m.init_state(4)
    _, y_dense = m.chunk(st, x)
    _, y_sparse = m.chunk(st, s)
    assert torch.allclose(y_dense, y_sparse, atol=1e-5)
    g_d = torch.autograd.grad(y_dense.sum(), m.layers[0].w_in)[0]
    g_s = torch.autograd.grad(y_sparse.sum(), m.layers[0].w_in)[0]
    assert torch.allclose(g_d, g_s, atol=1e-4, rtol=1e-5)
