"""Factorised input trace: found from the Jacobians, same gradients, less trace memory."""
import pytest
import torch

import spiketrain as st
from spiketrain.strategies.eprop.layers import NotFactorisableError

from .common import bptt_grads, eprop_grads, make_model, step_ce
from .test_exact import _assert_equal


def _notes(model, x, y, **opts):
    st.unroll(model, x, "eprop", step_loss=step_ce, targets=y, **opts)
    return st.last_report().notes


def test_detached_reset_is_factorised_and_exact(data):
    x, y = data
    model = make_model("detach")
    notes = _notes(model, x, y, chunk=16)
    assert notes["factorised"] == [True] and notes["exact"]
    _, gb = bptt_grads(model, x, y)
    _, ge = eprop_grads(model, x, y, chunk=16)
    _assert_equal(gb, ge)


@pytest.mark.parametrize("layers", [1, 2])
def test_factorised_equals_general_path(layers, data):
    """With recurrent weights (approximate e-prop) the factorised and the per-synapse trace
    give the same gradients; the factorised one holds one trace value per synapse instead
    of three."""
    x, y = data
    model = make_model("detach", recurrent=True, layers=layers)
    _, fac = eprop_grads(model, x, y, chunk=16)
    _, gen = eprop_grads(model, x, y, chunk=16, factorise=False)
    for name in gen:
        torch.testing.assert_close(fac[name], gen[name], rtol=1e-9, atol=1e-12)
    nf = _notes(model, x, y, chunk=16)
    ng = _notes(model, x, y, chunk=16, factorise=False)
    assert nf["factorised"] == [True] * layers and ng["factorised"] == [False] * layers
    assert 2 * nf["trace_bytes"] < ng["trace_bytes"]


@pytest.mark.parametrize("chunk", [1, 7, 200])
def test_factorised_chunk_size_does_not_change_gradients(chunk, data):
    x, y = data
    model = make_model("detach", recurrent=True)
    _, ref = eprop_grads(model, x, y, chunk=16)
    _, got = eprop_grads(model, x, y, chunk=chunk)
    for name in ref:
        torch.testing.assert_close(got[name], ref[name], rtol=1e-10, atol=1e-12)


def test_sparse_input_factorised(data):
    from spiketrain.hardware import spikes
    x, y = data
    model = make_model("detach", recurrent=True)
    _, dense = eprop_grads(model, x, y, chunk=16)
    _, sparse = eprop_grads(model, spikes.SparseSpikes.from_dense(x), y, chunk=16)
    for name in dense:
        torch.testing.assert_close(sparse[name], dense[name], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("neuron", ["lif", "alif", "syn"])
def test_reset_through_surrogate_is_not_factorised(neuron, data):
    x, y = data
    model = make_model(neuron)
    assert _notes(model, x, y)["factorised"] == [False]
    with pytest.raises(NotFactorisableError, match="factorise"):
        _notes(model, x, y, factorise=True)
