"""Fused RSNN chunk: keeping the surrogate derivative in forward (``keep_membrane=True``)
gives bit-identical gradients to replaying the membrane in backward (the default)."""
import os
import pytest
import numba  # noqa: F401  (a hard dependency: a broken install fails here)
import torch

import spiketrain as st
from spiketrain.hardware.compiled import available
from spiketrain.models import RSNN

# numba is a hard dependency: without it these tests fail (import error), never skip
pytestmark = pytest.mark.skipif(os.environ.get("SPIKETRAIN_KERNELS") == "torch", reason="compiled kernels switched off (SPIKETRAIN_KERNELS=torch)")


def _grads(model, x, y):
    out = st.unroll(model, x, "bptt")
    loss = torch.nn.functional.cross_entropy(model.logits(out), y)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    return out.detach(), grads


@pytest.mark.parametrize("neuron,reset", [("lif", "subtract"), ("lif", "zero"),
                                          ("alif", "subtract"), ("alif", "zero")])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("storage", ["bool", "bits"])
def test_keep_equals_replay(neuron, reset, layers, storage):
    torch.manual_seed(0)
    T, B = 150, 3   # three blocks of 64, the last one partial
    model = RSNN(20, 24, 5, layers=layers, neuron=neuron, reset=reset, spike_storage=storage)
    x = (torch.rand(T, B, 20) < 0.2).float()
    y = torch.randint(0, 5, (B,))
    o0, g0 = _grads(model, x, y)
    model.keep_membrane = True
    o1, g1 = _grads(model, x, y)
    assert torch.equal(o0, o1)
    assert sum(float(g.abs().sum()) for g in g0) > 0
    for a, b in zip(g0, g1):
        assert torch.equal(a, b)


def test_keep_saves_more_and_is_reported():
    torch.manual_seed(0)
    T, B, H = 200, 4, 32
    x = (torch.rand(T, B, 20) < 0.1).float()
    peaks = []
    for keep in (False, True):
        model = RSNN(20, H, 5, keep_membrane=keep)
        st.unroll(model, x, "bptt").sum().backward()
        peaks.append(st.last_report().peak_bytes["device"])
    assert peaks[1] - peaks[0] >= T * B * H * 4 * 0.9   # the kept surrogate derivative
