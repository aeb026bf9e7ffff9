"""Every strategy gives BPTT's outputs (bit-identical) and gradients (1e-5 relative)."""
import random

import pytest
import torch

import spiketrain as st
from spiketrain.hardware.spikes import SparseSpikes

from .common import GatedCell, assert_close_grads, make, run

ALL_MODELS = ["lif1", "alif1", "lif2", "alif2", "gated"]
STRATEGIES = [
    ("checkpoint", {"segment": 7}, ALL_MODELS),
    ("checkpoint", {}, ["alif2"]),
    ("revolve", {"slots": 4}, ALL_MODELS),
    ("revolve", {"slots": 2, "block": 3}, ["lif2", "gated"]),
    ("double", {"period": 12, "fine": 3}, ALL_MODELS),
    ("double", {"period": 20, "fine": 2, "fine_slots": 2}, ["alif2", "gated"]),
    ("offload", {"tier": "host"}, ALL_MODELS),
    ("offload", {"tier": "disk", "chunk_steps": 9}, ["alif2", "gated"]),
]
CASES = [(m, s, o) for s, o, ms in STRATEGIES for m in ms]


@pytest.mark.parametrize("model_name,strategy,opts", CASES)
def test_matches_bptt(model_name, strategy, opts):
    # random T (seeded per case), usually not a multiple of the segment
    T = random.Random(f"{model_name}-{strategy}-{opts}").randint(17, 40)
    model, x = make(model_name, T, x_grad=True)
    y0, g0, _ = run(model, x, "bptt")
    y1, g1, rep = run(model, x, strategy, **opts)
    assert torch.equal(y0, y1), "outputs must be bit-identical to BPTT"
    assert_close_grads(g1, g0)
    assert rep.steps == T and rep.strategy == strategy


@pytest.mark.parametrize("strategy,opts", [("checkpoint", {"segment": 5}), ("double", {}),
                                           ("revolve", {"slots": 4}), ("offload", {})])
def test_sparse_inputs(strategy, opts):
    model, x = make("lif2", 47)
    sp = SparseSpikes.from_dense(x)
    y0, g0, _ = run(model, x, "bptt")
    y1, g1, _ = run(model, sp, strategy, **opts)
    assert torch.equal(y0, y1)
    assert_close_grads(g1, g0)
    y2, g2, _ = run(model, sp, "bptt")
    assert torch.equal(y0, y2)


def test_initial_state_grad_and_any_head():
    """A given initial state requiring grad gets BPTT's gradient; any head after unroll."""
    model, x = make("alif1", 33)
    head = torch.nn.Linear(5, 2)
    torch.manual_seed(1)
    s0 = model.init_state(4)
    s0 = tuple(tuple(torch.rand_like(t).requires_grad_() for t in h) if isinstance(h, tuple)
               else torch.rand_like(h).requires_grad_() for h in s0)

    def loss(y):
        return torch.nn.functional.cross_entropy(head(y.mean(0)), torch.tensor([0, 1, 1, 0]))

    def grads(strategy, **o):
        for p in list(model.parameters()) + list(head.parameters()):
            p.grad = None
        leaves = [t for h in s0 for t in (h if isinstance(h, tuple) else (h,))]
        for t in leaves:
            t.grad = None
        loss(st.unroll(model, x, strategy=strategy, state=s0, **o)).backward()
        return ([p.grad.clone() for p in list(model.parameters()) + list(head.parameters())]
                + [t.grad.clone() for t in leaves])

    ref = grads("bptt")
    for s, o in [("checkpoint", {"segment": 4}), ("revolve", {"slots": 2}), ("double", {}),
                 ("offload", {})]:
        assert_close_grads(grads(s, **o), ref)


@pytest.mark.parametrize("reduce", ["sum", "mean", "max", "last"])
def test_reduced_outputs(reduce):
    """reduce= returns [B, ...] with the same value and gradients as reducing BPTT's outputs."""
    from spiketrain.models.rsnn import reduce_outputs
    model, x = make("lif1", 40, x_grad=True)
    model.b_out.data.normal_()
    y0, g0, _ = run(model, x, "bptt", loss_fn=lambda y: reduce_outputs(y, reduce).pow(2).sum())
    ref = reduce_outputs(y0, reduce)
    for s, o in [("checkpoint", {"segment": 6}), ("double", {}), ("revolve", {"slots": 3})]:
        y1, g1, _ = run(model, x, s, loss_fn=lambda y: y.pow(2).sum(), reduce=reduce, **o)
        assert torch.equal(y1, ref) if reduce in ("max", "last") else torch.allclose(y1, ref, rtol=1e-6)
        assert_close_grads(g1, g0)


def test_no_grad_inference():
    model, x = make("gated", 30)
    with torch.no_grad():
        y0 = model(x)
        y1 = st.unroll(model, x, strategy="checkpoint", segment=7)
        y2 = st.unroll(model, x, strategy="offload")
    assert torch.equal(y0, y1) and torch.equal(y0, y2)


def test_chunk_lengths_bit_identical():
    """The premise of bit-identity: chunk over T == chunks over any split of T."""
    model, x = make("alif2", 50)
    s = model.init_state(4)
    with torch.no_grad():
        _, y = model.chunk(s, x)
        parts, st_ = [], s
        for a, b in [(0, 1), (1, 14), (14, 15), (15, 50)]:
            st_, yy = model.chunk(st_, x[a:b])
            parts.append(yy)
    assert torch.equal(y, torch.cat(parts))
    assert isinstance(GatedCell(), st.models.RecurrentModel)


def test_mixed_rate_inputs_bit_identical():
    """Chunks with very different spike rates (sparse vs dense kernels) stay bit-identical."""
    model, _ = make("lif2", 10)
    torch.manual_seed(3)
    x = torch.cat([torch.rand(30, 4, 20) < 0.01, torch.rand(30, 4, 20) < 0.6]).float()
    y0, g0, _ = run(model, x, "bptt")
    for s, o in [("checkpoint", {"segment": 8}), ("double", {"period": 16, "fine": 4})]:
        y1, g1, _ = run(model, x, s, **o)
        assert torch.equal(y0, y1)
        assert_close_grads(g1, g0)
