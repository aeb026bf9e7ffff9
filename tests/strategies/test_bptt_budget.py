"""bptt given a device budget fits it or refuses before running, naming the bytes it needs."""
import pytest
import torch

import spiketrain as st
from spiketrain.hardware.spikes import SparseSpikes
from spiketrain.models import RSNN
from spiketrain.strategies import BudgetError


def _model_and_input(T=400):
    torch.manual_seed(0)
    return RSNN(n_in=30, hidden=16, n_out=3), (torch.rand(T, 4, 30) < 0.1).float()


def test_refuses_a_budget_it_cannot_fit_before_running():
    model, x = _model_and_input()
    s = st.strategies.get("bptt", budget={"device": 10})
    with pytest.raises(BudgetError, match=r"device: needs .* > budget 10 B"):
        st.unroll(model, x, strategy=s)
    assert s.report.steps == 0                       # the sequence was never run


@pytest.mark.parametrize("sparse", [False, True])
def test_fits_an_ample_budget_and_predicts_its_peak(sparse):
    model, x = _model_and_input()
    s = st.strategies.get("bptt", budget={"device": "1MiB"})
    out = st.unroll(model, SparseSpikes.from_dense(x) if sparse else x, strategy=s)
    out.sum().backward()
    need, peak = s.report.notes["predicted_peak_bytes"]["device"], s.report.peak_bytes["device"]
    assert 0 < peak <= (1 << 20)
    assert 0.5 * peak <= need <= 2.5 * peak, (need, peak)


def test_budget_just_below_the_real_peak_is_refused():
    """Whatever the estimate says, the exact count after the forward is held to the budget:
    a budget one byte short of the real peak is refused before backward."""
    model, x = _model_and_input()
    ref = st.strategies.get("bptt")
    st.unroll(model, x, strategy=ref).sum().backward()
    s = st.strategies.get("bptt", budget={"device": ref.report.peak_bytes["device"] - 1})
    with pytest.raises(BudgetError):
        st.unroll(model, x, strategy=s)
