"""The BPTT report: exact saved bytes, affine in T and in B, consistent between calls."""
import torch
import torch.nn.functional as F

import spiketrain as st
from spiketrain.models import RSNN


def _peak(model, T, B, strategy="bptt"):
    g = torch.Generator().manual_seed(T * 100 + B)
    x = (torch.rand(T, B, 20, generator=g) < 0.2).float()
    out = st.unroll(model, x, strategy=strategy)
    F.cross_entropy(model.logits(out), torch.zeros(B, dtype=torch.long)).backward()
    rep = st.last_report()
    assert rep.strategy == "bptt" and rep.steps == T and rep.recomputed_steps == 0
    assert set(rep.peak_bytes) == {"device"}
    return rep.peak_bytes["device"]


def test_peak_bytes_exactly_affine_for_the_step_graph():
    """Unfused (plain autograd through the step ops): every step saves the same tensors, so
    the counted bytes are exactly affine in T and in B."""
    torch.manual_seed(0)
    for neuron in ("lif", "alif"):
        model = RSNN(n_in=20, hidden=16, n_out=5, neuron=neuron, layers=2, fused=False)
        p = {T: _peak(model, T, 4) for T in (20, 40, 60, 80)}
        per_step = p[40] - p[20]
        assert p[20] > 0 and per_step > 0
        assert p[60] - p[40] == per_step and p[80] - p[60] == per_step, p
        q = {B: _peak(model, 40, B) for B in (4, 8, 12)}
        assert q[4] == p[40]
        assert q[12] - q[8] == q[8] - q[4] > 0, q


def test_peak_bytes_grow_linearly_for_the_default_kernels():
    """Default (fused) kernels pack what they keep, so sizes round to storage granules: the
    bytes still grow with T and B at a steady rate."""
    torch.manual_seed(0)
    for neuron in ("lif", "alif"):
        model = RSNN(n_in=20, hidden=16, n_out=5, neuron=neuron, layers=2)
        p = {T: _peak(model, T, 4) for T in (20, 40, 80, 160, 320)}
        assert 0 < p[20] < p[40] < p[80] < p[160] < p[320], p
        slope_a, slope_b = (p[160] - p[80]) / 80, (p[320] - p[160]) / 160
        assert abs(slope_a - slope_b) <= 0.1 * slope_b, p
        q = {B: _peak(model, 40, B) for B in (4, 8, 16)}
        assert q[4] < q[8] < q[16]
        assert abs((q[16] - q[8]) - 2 * (q[8] - q[4])) <= 0.1 * (q[16] - q[8]), q


def test_report_is_kept_on_the_strategy_and_is_repeatable():
    model = RSNN(n_in=20, hidden=16, n_out=5)
    strat = st.strategies.get("bptt")
    x = (torch.rand(30, 4, 20) < 0.2).float()
    st.unroll(model, x, strategy=strat).sum().backward()
    first = dict(strat.report.peak_bytes)
    assert st.last_report() is strat.report
    st.unroll(model, x, strategy=strat).sum().backward()
    assert strat.report.peak_bytes == first
