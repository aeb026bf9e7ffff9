"""The detector under every memory strategy: same outputs and gradients as BPTT."""
import pytest
import torch

import spiketrain as st
from spiketrain.models.detector import HybridDetector

SIZE = (32, 32)


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)   # tiny convolutions: threads only add overhead on a shared machine
    yield
    torch.set_num_threads(n)


def _model(bridge="attention", bins=8, norm="batch"):
    torch.manual_seed(0)
    return HybridDetector(input_size=SIZE, bins=bins, channels=(4, 8, 8, 8), ann_width=8,
                          head_depth=1, bridge=bridge, init_tau=2.0, v_threshold=0.5, norm=norm)


def _batch(T=8, B=2):
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(T, B, 2, *SIZE, generator=g) < 0.15).float() * 2
    targets = [torch.tensor([[0, 4.0, 6.0, 12.0, 8.0]]),
               torch.tensor([[1, 18.0, 10.0, 6.0, 14.0], [0, 2.0, 20.0, 10.0, 9.0]])][:B]
    return x, targets


def _grads(model, x, targets, strategy, **opts):
    model.zero_grad(set_to_none=True)
    out = st.unroll(model, x, strategy=strategy, **opts)
    loss = model.detection_loss(model.detect(out), targets)
    loss.backward()
    return out.detach(), loss.item(), {n: p.grad.clone() for n, p in model.named_parameters()
                                       if p.grad is not None}


def test_unroll_shapes_and_outputs_are_spikes():
    model = _model()
    x, _ = _batch()
    out = st.unroll(model, x, strategy="bptt")
    assert out.shape == (8, 2, 8, 4, 4)
    assert bool(((out == 0) | (out == 1)).all()) and out.mean().item() > 0
    raw = model.detect(out)
    assert raw.shape == (2, 16 + 4 + 1, 5 + 2)
    assert model.anchors.shape == (21, 3)
    dets = model.decode(raw, conf=0.0)
    assert len(dets) == 2 and all(d.shape[1] == 6 for d in dets)


@pytest.mark.parametrize("strategy,opts", [("checkpoint", {"segment": 3}), ("checkpoint", {}),
                                           ("double", {"period": 4, "fine": 2}), ("double", {}),
                                           ("offload", {}), ("offload", {"tier": "disk"}),
                                           ("revolve", {})])
@pytest.mark.parametrize("bridge", ["attention", "naive"])
def test_strategy_gradients_equal_bptt(strategy, opts, bridge):
    model = _model(bridge)
    x, targets = _batch()
    ref_out, ref_loss, ref = _grads(model, x, targets, "bptt")
    out, loss, got = _grads(model, x, targets, strategy, **opts)
    assert torch.equal(out, ref_out)
    assert abs(loss - ref_loss) <= 1e-6 * max(1.0, abs(ref_loss))
    assert set(got) == set(ref)
    backbone = [n for n in ref if n.startswith("backbone.")]
    assert backbone and any(float(ref[n].abs().max()) > 0 for n in backbone)
    for n in ref:
        assert torch.allclose(got[n], ref[n], rtol=1e-5, atol=1e-5), (n, float((got[n] - ref[n]).abs().max()))


@pytest.mark.parametrize("norm", ["group"])
def test_other_norms_equal_bptt_under_double(norm):
    model = _model(norm=norm)
    x, targets = _batch()
    ref_out, _, ref = _grads(model, x, targets, "bptt")
    out, _, got = _grads(model, x, targets, "double", period=4, fine=2)
    assert torch.equal(out, ref_out) and out.sum() > 0
    for n in ref:
        assert torch.allclose(got[n], ref[n], rtol=1e-5, atol=1e-5), n


def test_checkpoint_recomputes_and_reports_less_memory():
    model = _model()
    x, targets = _batch(T=8)
    _grads(model, x, targets, "bptt")
    bptt_peak = st.last_report().peak_bytes["device"]
    _grads(model, x, targets, "checkpoint", segment=2)
    rep = st.last_report()
    assert rep.recomputed_steps > 0
    assert rep.peak_bytes["device"] < bptt_peak


def test_registry_and_options():
    m = st.models.build("hybrid_detector", input_size=(48, 64), bins=5, width=0.125)
    assert isinstance(m, HybridDetector)
    assert [b.conv.out_channels for b in m.backbone.blocks] == [8, 16, 32, 32]
    assert m.strides == (8, 16, 32) and m.level_shapes == [(6, 8), (3, 4), (2, 2)]
    assert getattr(m, "takes_sparse_input", None) is False
    with pytest.raises(ValueError):
        HybridDetector(bridge="nope")
    with pytest.raises(ValueError):
        HybridDetector(norm="nope")
