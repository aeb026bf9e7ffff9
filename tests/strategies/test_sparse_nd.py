"""Event-camera shaped spike input [T, B, 2, H, W] stays sparse and trains a conv model."""
import pytest
import torch
from torch import nn

import spiketrain as st
from spiketrain.hardware.spikes import SparseSpikes
from spiketrain.models import RecurrentModel

from .common import assert_close_grads


class ConvLeaky(RecurrentModel):
    """A convolutional cell: ``x_t [B, 2, 8, 8]`` -> Conv2d -> leaky state ``[B, 4, 8, 8]``,
    readout ``[B, 3]`` from the pooled state."""

    def __init__(self, decay=0.8):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.out = nn.Linear(4, 3)
        self.decay = decay

    def init_state(self, batch_size):
        return self.out.weight.new_zeros(batch_size, 4, 8, 8)

    def step(self, state, x_t):
        v = self.decay * state + torch.tanh(self.conv(x_t))
        return v, self.out(v.mean((2, 3)))


def _run(model, x, strategy, **opts):
    model.zero_grad(set_to_none=True)
    y = st.unroll(model, x, strategy=strategy, **opts)
    (y ** 2).mean().backward()
    return y.detach(), [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("strategy,opts", [("bptt", {}), ("checkpoint", {"segment": 7}),
                                           ("double", {"period": 12, "fine": 4}), ("offload", {})])
def test_sparse_5d_input_trains_conv_model_like_dense(strategy, opts):
    torch.manual_seed(0)
    model = ConvLeaky()
    dense = (torch.rand(40, 3, 2, 8, 8) < 0.03).float()  # event-camera sparse
    sparse = SparseSpikes.from_dense(dense)
    assert sparse.shape == dense.shape and sparse.nbytes < dense.numel() * 4 / 5
    y_ref, g_ref = _run(model, dense, "bptt")
    y, g = _run(model, sparse, strategy, **opts)
    assert y.shape == (40, 3, 3)
    torch.testing.assert_close(y, y_ref, rtol=0, atol=1e-6)
    assert_close_grads(g, g_ref, tol=1e-6)
