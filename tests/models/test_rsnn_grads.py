"""RSNN gradients through ``unroll(..., "bptt")`` equal a hand-written autograd loop over ``step``."""
import pytest
import torch
import torch.nn.functional as F

import spiketrain as st
from spiketrain.models import RSNN

T, B, N_IN, H, C = 30, 4, 20, 16, 5


def _data(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(T, B, N_IN, generator=g) < 0.3).double()
    y = torch.randint(0, C, (B,), generator=g)
    return x, y


def _hand_loop(model, x):
    """Plain loop over ``model.step``: the reference."""
    state = model.init_state(x.shape[1])
    ys = []
    for x_t in x.unbind(0):
        state, y_t = model.step(state, x_t)
        ys.append(y_t)
    return torch.stack(ys, 0)


@pytest.mark.parametrize("neuron", ["lif", "alif"])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_bptt_gradients_equal_step_loop(neuron, layers, reset):
    torch.manual_seed(0)
    model = RSNN(n_in=N_IN, hidden=H, n_out=C, layers=layers, neuron=neuron, reset=reset,
                 input_gain=4.0).double()
    x, y = _data()
    params = [p for p in model.parameters()]

    out = st.unroll(model, x, strategy="bptt")
    loss = F.cross_entropy(model.logits(out), y)
    g_unroll = torch.autograd.grad(loss, params)

    ref = _hand_loop(model, x)
    loss_ref = F.cross_entropy(model.logits(ref), y)
    g_ref = torch.autograd.grad(loss_ref, params)

    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)
    torch.testing.assert_close(loss, loss_ref, rtol=0, atol=1e-6)
    for (name, _), a, b in zip(model.named_parameters(), g_unroll, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6, msg=f"gradient of {name} differs")
    # the comparison means something: the network spiked and the input weights got gradient
    assert g_ref[0].abs().sum() > 0
    state = model.init_state(B)
    spikes = 0.0
    with torch.no_grad():
        for x_t in x.unbind(0):
            state, _ = model.step(state, x_t)
            spikes += float(state[0][-1].sum())
    assert spikes > 0


def test_chunk_equals_step_loop_float32():
    torch.manual_seed(1)
    model = RSNN(n_in=N_IN, hidden=H, n_out=C, layers=2, neuron="alif")
    x, _ = _data(1)
    x = x.float()
    with torch.no_grad():
        _, y_chunk = model.chunk(model.init_state(B), x)
        y_loop = _hand_loop(model, x)
    torch.testing.assert_close(y_chunk, y_loop, rtol=1e-5, atol=1e-5)


def test_unroll_outputs_time_major_and_attached():
    model = RSNN(n_in=N_IN, hidden=H, n_out=C)
    x, _ = _data()
    out = st.unroll(model, x.float())
    assert out.shape == (T, B, C)
    assert out.requires_grad
    with pytest.raises(ValueError, match="time-major"):
        st.unroll(model, torch.zeros(N_IN))


@pytest.mark.parametrize("how", ["max", "sum", "mean", "last"])
def test_readout_reductions(how):
    o = torch.randn(7, 3, 4)
    expect = {"max": o.max(0).values, "sum": o.sum(0), "mean": o.mean(0), "last": o[-1]}[how]
    model = RSNN(n_in=5, hidden=4, n_out=4, readout=how)
    torch.testing.assert_close(model.logits(o), expect)
