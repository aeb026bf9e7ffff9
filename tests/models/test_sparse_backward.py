"""Sparse backward (``RSNN(sparse_backward=c)``): the exact gradient of the network whose
surrogate derivative is zeroed where ``|v - thr| / threshold > c``.

Reference: autograd through a loop over ``RSNN.step`` with the surrogate masked the same
way. ``c = inf`` is the exact gradient."""
import math

import pytest
import torch

import spiketrain as st
from spiketrain.hardware.compiled import available
from spiketrain.models import RSNN
from spiketrain.models.snn import surrogates


def _loss(model, out, y):
    return torch.nn.functional.cross_entropy(model.logits(out), y)


def _fused_grads(model, x, y):
    out = st.unroll(model, x, "bptt")
    return out.detach(), torch.autograd.grad(_loss(model, out, y), list(model.parameters()))


def _loop_grads(model, x, y, cut, monkeypatch):
    """Autograd over ``step`` with the surrogate zeroed beyond ``cut``."""
    fn, scale = surrogates.SURROGATE_GRADS[model.layers[0].surrogate]
    masked = (lambda v, k: fn(v, k) * (v.abs() <= cut).to(v.dtype))
    monkeypatch.setitem(surrogates.SURROGATE_GRADS, model.layers[0].surrogate, (masked, scale))
    state = model.init_state(x.shape[1])
    outs = []
    for x_t in x.unbind(0):
        state, o = model.step(state, x_t)
        outs.append(o)
    out = torch.stack(outs)
    return out.detach(), torch.autograd.grad(_loss(model, out, y), list(model.parameters()))


def _setup(neuron="lif", reset="subtract", layers=1, recurrent=True, surrogate="fast_sigmoid",
           T=130, cut=None, seed=0):
    torch.manual_seed(seed)
    model = RSNN(16, 20, 4, layers=layers, neuron=neuron, reset=reset, recurrent=recurrent,
                 surrogate=surrogate, sparse_backward=cut).double()
    x = (torch.rand(T, 3, 16) < 0.3).double()
    y = torch.randint(0, 4, (3,))
    return model, x, y


@pytest.mark.parametrize("neuron,reset", [("lif", "subtract"), ("lif", "zero"),
                                          ("alif", "subtract")])
@pytest.mark.parametrize("recurrent", [True, False])
@pytest.mark.parametrize("cut", [0.05, 0.3])
def test_sparse_backward_equals_masked_autograd_loop(neuron, reset, recurrent, cut, monkeypatch):
    model, x, y = _setup(neuron, reset, recurrent=recurrent, cut=cut)
    o_f, g_f = _fused_grads(model, x, y)
    o_l, g_l = _loop_grads(model, x, y, cut, monkeypatch)
    assert torch.allclose(o_f, o_l, rtol=0, atol=1e-10)
    for a, b in zip(g_f, g_l):
        assert torch.allclose(a, b, rtol=1e-8, atol=1e-10), (a - b).abs().max()
    # and the mask really changes the gradient
    model.sparse_backward = None
    _, g_e = _fused_grads(model, x, y)
    assert max(float((a - b).abs().max()) for a, b in zip(g_f, g_e)) > 1e-6


@pytest.mark.parametrize("surrogate", ["superspike", "atan", "triangle"])
def test_sparse_backward_surrogates_and_layers(surrogate, monkeypatch):
    model, x, y = _setup(layers=2, surrogate=surrogate, cut=0.2)
    _, g_f = _fused_grads(model, x, y)
    _, g_l = _loop_grads(model, x, y, 0.2, monkeypatch)
    for a, b in zip(g_f, g_l):
        assert torch.allclose(a, b, rtol=1e-8, atol=1e-10), (a - b).abs().max()


@pytest.mark.parametrize("keep", [False, True])
def test_infinite_cut_is_the_exact_gradient(keep):
    model, x, y = _setup(layers=2, cut=math.inf)
    model.keep_membrane = keep
    o_s, g_s = _fused_grads(model, x, y)
    model.sparse_backward = None
    o_e, g_e = _fused_grads(model, x, y)
    assert torch.equal(o_s, o_e)
    for a, b in zip(g_s, g_e):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12), (a - b).abs().max()


def test_sparse_backward_float32_and_keep():
    torch.manual_seed(1)
    model = RSNN(30, 40, 5, sparse_backward=0.5)
    x = (torch.rand(200, 4, 30) < 0.1).float()
    y = torch.randint(0, 5, (4,))
    _, g0 = _fused_grads(model, x, y)
    model.keep_membrane = True
    _, g1 = _fused_grads(model, x, y)
    for a, b in zip(g0, g1):
        assert torch.equal(a, b)


def test_eager_path_masks_too(monkeypatch):
    monkeypatch.setenv("SPIKETRAIN_KERNELS", "torch")
    model, x, y = _setup(cut=0.2)
    _, g_f = _fused_grads(model, x, y)
    _, g_l = _loop_grads(model, x, y, 0.2, monkeypatch)
    for a, b in zip(g_f, g_l):
        assert torch.allclose(a, b, rtol=1e-8, atol=1e-10)


def test_option_checked_and_kept():
    with pytest.raises(ValueError):
        RSNN(4, 4, 2, sparse_backward=0.0)
    assert RSNN(4, 4, 2).sparse_backward is None
    assert RSNN(4, 4, 2, sparse_backward=0.5).sparse_backward == 0.5
