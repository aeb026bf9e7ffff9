"""Spiking backbone: PLIF against the hand-written formula, purity, spike rates."""
import math

import pytest
import torch

from spiketrain.models.detector import PLIF, SpikingBackbone, StepBatchNorm, plif_step


def test_plif_step_matches_hand_loop():
    torch.manual_seed(0)
    T, shape = 12, (3, 4, 5, 5)
    xs = torch.randn(T, *shape) * 2
    neuron = PLIF(init_tau=3.0, v_threshold=1.0, v_reset=0.0)
    with torch.no_grad():
        neuron.w.fill_(0.3)
    inv_tau = 1.0 / (1.0 + math.exp(-0.3))           # 1/tau = sigmoid(w)
    v = torch.zeros(shape)
    v_ref = torch.zeros(shape)
    for x in xs.unbind(0):
        v, s = neuron(v, x)
        # V_t = V_{t-1} + (X_t - (V_{t-1} - V_reset)) / tau ; spike if V_t > V_th ; hard reset
        h = v_ref + (x - (v_ref - 0.0)) * inv_tau
        s_ref = (h > 1.0).float()
        v_ref = torch.where(s_ref > 0, torch.zeros_like(h), h)
        assert torch.equal(s, s_ref)
        assert torch.allclose(v, v_ref, atol=1e-6)


def test_plif_nonzero_reset_and_init_tau():
    neuron = PLIF(init_tau=2.0, v_reset=-0.5)
    assert abs(neuron.inv_tau.item() - 0.5) < 1e-7
    v, s = plif_step(torch.tensor([0.0, 0.9]), torch.tensor([4.0, 0.0]), torch.tensor(0.5), 1.0, -0.5)
    # h = v + (x - (v + 0.5)) / 2: [1.75 -> spike -> reset -0.5, 0.9 + (-1.4)/2 = 0.2]
    assert torch.equal(s, torch.tensor([1.0, 0.0]))
    assert torch.allclose(v, torch.tensor([-0.5, 0.2]))
    with pytest.raises(ValueError):
        PLIF(init_tau=1.0)


def test_surrogate_gradient_flows_to_w_and_input():
    neuron = PLIF()
    x = torch.full((4,), 1.5, requires_grad=True)
    _, s = neuron(torch.zeros(4), x)
    s.sum().backward()
    assert x.grad is not None and bool((x.grad != 0).all())
    assert neuron.w.grad is not None and float(neuron.w.grad) != 0.0


def test_step_batch_norm_is_pure_and_uses_step_statistics():
    bn = StepBatchNorm(3)
    x = torch.randn(4, 3, 6, 6) * 3 + 2
    before = {k: v.clone() for k, v in bn.state_dict().items()}
    y1 = bn(x)
    bn.eval()
    y2 = bn(x)
    assert torch.equal(y1, y2)                                 # train == eval
    assert all(torch.equal(before[k], v) for k, v in bn.state_dict().items())
    assert torch.allclose(y1.mean((0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(y1.var((0, 2, 3), unbiased=False), torch.ones(3), atol=1e-3)


def test_backbone_shapes_state_and_rates():
    bb = SpikingBackbone(2, (40, 52), (4, 8, 8, 8))
    assert bb.stride == 8
    assert bb.state_shapes == [(4, 20, 26), (8, 10, 13), (8, 5, 7), (8, 5, 7)]
    x = (torch.rand(6, 3, 2, 40, 52) < 0.2).float()
    state = bb.init_state(3, x)
    state2, s = bb.step(state, x[0])
    assert s.shape == (3, 8, 5, 7)
    assert [tuple(v.shape[1:]) for v in state2] == bb.state_shapes
    rates = bb.spike_rates(x)
    assert len(rates) == 4 and all(0.0 <= r <= 1.0 for r in rates) and rates[0] > 0


def test_backbone_step_is_pure():
    torch.manual_seed(1)
    bb = SpikingBackbone(2, (32, 32), (4, 8, 8, 8))
    x = torch.rand(2, 2, 32, 32)
    state = tuple(torch.rand_like(v) for v in bb.init_state(2, x))
    a = bb.step(state, x)
    b = bb.step(state, x)
    assert all(torch.equal(u, v) for u, v in zip(a[0], b[0])) and torch.equal(a[1], b[1])


@pytest.mark.parametrize("surrogate,v_reset", [("atan", 0.0), ("fast_sigmoid", -0.3)])
def test_fused_plif_equals_composed_ops(surrogate, v_reset):
    torch.manual_seed(2)
    xs = (torch.randn(15, 2, 3, 4, 4) * 1.5).requires_grad_(True)
    res = {}
    for fused in (False, True):
        neuron = PLIF(init_tau=2.5, v_reset=v_reset, surrogate=surrogate, fused=fused)
        xs.grad = None
        v = torch.zeros(2, 3, 4, 4)
        vs, ss = [], []
        for x in xs.unbind(0):
            v, s = neuron(v, x)
            vs.append(v)
            ss.append(s)
        loss = (torch.stack(ss) * torch.linspace(0.5, 2, 15).view(15, 1, 1, 1, 1)).sum() \
            + (torch.stack(vs) ** 2).sum() * 0.1
        loss.backward()
        res[fused] = (torch.stack(ss), torch.stack(vs), xs.grad.clone(), neuron.w.grad.clone())
    assert torch.equal(res[True][0], res[False][0]) and torch.equal(res[True][1], res[False][1])
    assert res[True][0].mean().item() > 0.01
    assert torch.allclose(res[True][2], res[False][2], rtol=1e-5, atol=1e-6)
    assert torch.allclose(res[True][3], res[False][3], rtol=1e-5, atol=1e-6)
