"""e-prop refuses what it cannot handle, with errors that name the fix."""
import pytest
import torch

import spiketrain as st
from spiketrain.strategies.eprop import NotDiagonalError

from .common import make_model, step_ce


def test_needs_online_loss(data):
    x, _ = data
    with pytest.raises(ValueError, match="step_loss"):
        st.unroll(make_model(), x, "eprop")


def test_targets_must_cover_every_step(data):
    x, y = data
    with pytest.raises(ValueError, match="time-major"):
        st.unroll(make_model(), x, "eprop", step_loss=step_ce, targets=y[:-3])


def test_non_diagonal_neuron_refused(data):
    x, y = data
    model = make_model("syn")
    layer = model.layers[0]
    layer.couple = True
    with pytest.raises(NotDiagonalError, match="not diagonal per neuron"):
        st.unroll(model, x, "eprop", step_loss=step_ce, targets=y)


def test_unsupported_model_refused(data):
    x, y = data

    class Plain(st.models.RecurrentModel):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(20, 5).double()

        def init_state(self, B):
            return torch.zeros(B, 5, dtype=torch.float64)

        def step(self, h, x_t):
            h = torch.tanh(self.lin(x_t) + h)
            return h, h

    with pytest.raises(TypeError, match="bptt"):
        st.unroll(Plain(), x, "eprop", step_loss=step_ce, targets=y)


def test_extra_trainable_parameter_refused(data):
    x, y = data
    model = make_model("syn")
    model.layers[0].tau = torch.nn.Parameter(torch.ones(16, dtype=torch.float64))
    with pytest.raises(ValueError, match="requires_grad_"):
        st.unroll(model, x, "eprop", step_loss=step_ce, targets=y)


def test_budget_refused_before_running(data):
    x, y = data
    with pytest.raises(st.strategies.BudgetError, match="needs"):
        st.unroll(make_model(), x, "eprop", step_loss=step_ce, targets=y, budget={"device": 1000})


def test_report_memory_independent_of_T():
    from .common import make_data
    model = make_model()
    peaks = []
    for T in (120, 300):  # both at least one chunk (100 steps)
        x, y = make_data(T=T)
        st.unroll(model, x, "eprop", step_loss=step_ce, targets=y)
        rep = st.last_report()
        assert rep.steps == T and rep.notes["exact"]
        peaks.append(rep.peak_bytes["device"])
    assert peaks[0] == peaks[1] > 0
