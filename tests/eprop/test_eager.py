"""The eager (plain PyTorch) e-prop path: taken with SPIKETRAIN_KERNELS=torch (and off the CPU),
equal to BPTT where e-prop is exact and to the compiled path elsewhere; refusals still apply."""
import pytest
import torch

import spiketrain as st
from spiketrain.hardware.compiled import ENV
from spiketrain.strategies.eprop import NotDiagonalError

from .common import bptt_grads, eprop_grads, loop_grads, make_data, make_model, step_ce
from .test_exact import _assert_equal


@pytest.fixture
def eager_env(monkeypatch):
    monkeypatch.setenv(ENV, "torch")
    return monkeypatch


@pytest.mark.parametrize("neuron", ["lif", "alif"])
def test_eager_single_layer_equals_bptt(neuron, data, eager_env):
    x, y = data
    model = make_model(neuron)
    lb, gb = bptt_grads(model, x, y)
    le, ge = eprop_grads(model, x, y, chunk=16)
    notes = st.last_report().notes
    assert notes["eager"] is True and notes["compiled"] == [False] and notes["exact"]
    assert torch.allclose(lb, le, rtol=1e-12)
    _assert_equal(gb, ge)
    # and against the independent reference: autograd through model.step, no fused kernel
    lr, gr = loop_grads(model, x, y)
    assert torch.allclose(lr, le, rtol=1e-12)
    _assert_equal(gr, ge)


@pytest.mark.parametrize("neuron", ["lif", "alif"])
def test_eager_equals_compiled_on_recurrent_net(neuron, monkeypatch):
    x, y = make_data(T=60)
    model = make_model(neuron, recurrent=True, layers=2)
    monkeypatch.delenv(ENV, raising=False)
    _, fast = eprop_grads(model, x, y, chunk=16)
    assert st.last_report().notes["eager"] is False
    monkeypatch.setenv(ENV, "torch")
    _, slow = eprop_grads(model, x, y, chunk=16)
    rep = st.last_report()
    assert rep.notes["eager"] is True and rep.peak_bytes["device"] > 0
    for name in fast:
        assert fast[name].norm() > 0, name
        torch.testing.assert_close(slow[name], fast[name], rtol=1e-5, atol=1e-12 *
                                   float(fast[name].abs().max()))


def test_eager_sparse_spike_input_same_as_dense(data, eager_env):
    from spiketrain.hardware import spikes
    x, y = data
    model = make_model("alif", recurrent=True)
    _, dense = eprop_grads(model, x, y, chunk=16)
    _, sparse = eprop_grads(model, spikes.SparseSpikes.from_dense(x), y, chunk=16)
    assert st.last_report().notes["eager"] is True
    for name in dense:
        torch.testing.assert_close(sparse[name], dense[name], rtol=1e-12, atol=1e-14)


def test_eager_refusals(data, eager_env):
    x, y = data
    with pytest.raises(ValueError, match="step_loss"):
        st.unroll(make_model(), x, "eprop")
    model = make_model("syn")
    model.layers[0].couple = True
    with pytest.raises(NotDiagonalError, match="not diagonal per neuron"):
        st.unroll(model, x, "eprop", step_loss=step_ce, targets=y)
    with pytest.raises(st.strategies.BudgetError, match="needs"):
        st.unroll(make_model(), x, "eprop", step_loss=step_ce, targets=y,
                  budget={"device": 1000})
    with pytest.raises(ValueError, match="factorise='auto' or False"):
        st.unroll(make_model(), x, "eprop", step_loss=step_ce, targets=y, factorise=True)


def test_dispatch_rule(monkeypatch):
    """Off the CPU always eager; on the CPU only with SPIKETRAIN_KERNELS=torch."""
    from spiketrain.strategies.eprop import eager
    monkeypatch.delenv(ENV, raising=False)
    assert eager.wanted(torch.device("cuda", 0)) and not eager.wanted(torch.device("cpu"))
    monkeypatch.setenv(ENV, "torch")
    assert eager.wanted(torch.device("cpu"))
