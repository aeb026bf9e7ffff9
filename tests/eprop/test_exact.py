"""e-prop equals BPTT where it is exact: one layer, no recurrent weights, per-step loss."""
import pytest
import torch
import torch.nn.functional as F

import spiketrain as st

from .common import bptt_grads, eprop_grads, make_data, make_model


def _assert_equal(gb, ge, rtol=1e-5):
    assert gb.keys() == ge.keys()
    for name in gb:
        a, b = gb[name].flatten(), ge[name].flatten()
        assert a.norm() > 0, name
        cos = F.cosine_similarity(a, b, 0)
        assert cos >= 0.99999, (name, float(cos))
        # 1e-5 relative per element (exact zeros, from inputs that never spiked, stay zero)
        err = (a - b).abs()
        assert bool((err <= rtol * a.abs() + 1e-12 * a.abs().max()).all()), \
            (name, float((err / a.abs().clamp_min(1e-30)).max()))


@pytest.mark.parametrize("neuron", ["lif", "alif", "syn"])
def test_single_layer_equals_bptt(neuron, data):
    x, y = data
    model = make_model(neuron)
    lb, gb = bptt_grads(model, x, y)
    le, ge = eprop_grads(model, x, y, chunk=16)
    assert torch.allclose(lb, le, rtol=1e-12)
    _assert_equal(gb, ge)


@pytest.mark.parametrize("neuron", ["lif", "alif"])
@pytest.mark.parametrize("dtype,reset", [(torch.float64, "zero"), (torch.float32, "zero"),
                                         (torch.float32, "subtract")])
def test_zero_reset_and_float32(neuron, dtype, reset):
    """reset='zero' (multiplicative reset) is exact too, and so is float32, per element:
    float64 to 1e-5 relative; float32 to 2e-3 relative plus 2e-4 of the largest gradient
    (measured worst: 6e-4 relative, 1e-4 of the largest). A gradient scaled by 2 or by 1/T
    fails either."""
    x, y = make_data(dtype=dtype)
    model = make_model(neuron, dtype=dtype)
    for layer in model.layers:
        layer.reset = reset
    _, gb = bptt_grads(model, x, y)
    _, ge = eprop_grads(model, x, y)
    if dtype == torch.float64:
        _assert_equal(gb, ge)
        return
    assert gb.keys() == ge.keys()
    for name in gb:
        assert gb[name].norm() > 0, name
        torch.testing.assert_close(ge[name], gb[name], rtol=2e-3,
                                   atol=2e-4 * float(gb[name].abs().max()), msg=name)


@pytest.mark.parametrize("chunk", [1, 7, 200])
def test_chunk_size_does_not_change_gradients(chunk):
    x, y = make_data(T=40)
    model = make_model("alif", recurrent=True, layers=2)
    _, ref = eprop_grads(model, x, y, chunk=8)
    _, got = eprop_grads(model, x, y, chunk=chunk)
    for name in ref:
        torch.testing.assert_close(got[name], ref[name], rtol=1e-10, atol=1e-12)


def test_recurrent_readout_exact_and_inputs_approximate(data):
    """With recurrent weights the readout gradient stays exact; hidden weights are e-prop's
    approximation: correlated with BPTT but not equal."""
    x, y = data
    model = make_model("lif", recurrent=True)
    _, gb = bptt_grads(model, x, y)
    _, ge = eprop_grads(model, x, y)
    for name in ("w_out", "b_out"):
        torch.testing.assert_close(ge[name], gb[name], rtol=1e-9, atol=1e-12)
    for name in ("layers.0.w_in", "layers.0.w_rec"):
        cos = float(F.cosine_similarity(gb[name].flatten(), ge[name].flatten(), 0))
        assert 0.2 < cos < 0.9999, (name, cos)


def test_sparse_spike_input_same_as_dense(data):
    from spiketrain.hardware import spikes
    x, y = data
    model = make_model("lif")
    _, dense = eprop_grads(model, x, y)
    _, sparse = eprop_grads(model, spikes.SparseSpikes.from_dense(x), y)
    for name in dense:
        torch.testing.assert_close(sparse[name], dense[name], rtol=1e-12, atol=1e-14)


def test_sparse_and_dense_presynaptic_paths_agree(data, monkeypatch):
    from spiketrain.strategies.eprop.traces import SynapseTrace
    x, y = data
    model = make_model("alif", recurrent=True)
    monkeypatch.setattr(SynapseTrace, "sparse_below", 0.0)
    _, dense = eprop_grads(model, x, y)
    monkeypatch.setattr(SynapseTrace, "sparse_below", 1.1)
    _, sparse = eprop_grads(model, x, y)
    for name in dense:
        torch.testing.assert_close(sparse[name], dense[name], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("neuron", ["lif", "alif"])
def test_recurrent_weights_at_zero_are_exact(neuron, data):
    """With W_rec = 0 the recurrent path e-prop leaves out carries nothing: w_rec's gradient
    (presynaptic z_{t-1}) and w_in's equal BPTT's."""
    x, y = data
    model = make_model(neuron, recurrent=True)
    with torch.no_grad():
        model.layers[0].w_rec.zero_()
    _, gb = bptt_grads(model, x, y)
    _, ge = eprop_grads(model, x, y)
    _assert_equal(gb, ge)


@pytest.mark.parametrize("neuron,reset", [("lif", "subtract"), ("lif", "zero"),
                                          ("alif", "subtract"), ("alif", "zero")])
def test_compiled_equals_automatic_jacobians(neuron, reset, data):
    """The compiled LIF/ALIF kernel (spike trace eliminated) and the autograd path (every
    component's trace) give the same e-prop gradients, recurrent weights included."""
    x, y = data
    model = make_model(neuron, recurrent=True)
    for layer in model.layers:
        layer.reset = reset
    _, fast = eprop_grads(model, x, y, chunk=16)
    assert st.last_report().notes["compiled"] == [True]
    _, auto = eprop_grads(model, x, y, chunk=16, compiled=False)
    assert st.last_report().notes["compiled"] == [False]
    for name in auto:
        torch.testing.assert_close(fast[name], auto[name], rtol=1e-9, atol=1e-12)


def test_sparse_input_with_duplicate_spikes(data):
    """A spike listed twice counts once (as SparseSpikes densifies it)."""
    from spiketrain.hardware import spikes
    x, y = data
    sp = spikes.SparseSpikes.from_dense(x)
    dup = spikes.SparseSpikes(torch.cat([sp.times, sp.times]), torch.cat([sp.batch, sp.batch]),
                              torch.cat([sp.units, sp.units]), sp.shape)
    model = make_model("alif", recurrent=True)
    _, dense = eprop_grads(model, x, y, chunk=16)
    _, got = eprop_grads(model, dup, y, chunk=16)
    for name in dense:
        torch.testing.assert_close(got[name], dense[name], rtol=1e-12, atol=1e-14)
