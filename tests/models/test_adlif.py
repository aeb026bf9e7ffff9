"""adLIF and learnable-tau neurons: ``alpha = exp(-dt / tau)``, its gradients, both adLIF
forms, training under every memory strategy, e-prop's clear refusal."""
import math

import pytest
import torch
import torch.nn.functional as F

import spiketrain as st
from spiketrain.models import RSNN, resolve_neuron
from spiketrain.models.snn import adlif as _adlif  # noqa: F401  (registers "adlif")
from spiketrain.models.snn import learnable as _learnable  # noqa: F401
from spiketrain.models.snn.learnable import decay, tau_from_decay

LEARNABLE = ["adlif", "lif_learn", "alif_learn"]


def _data(T=25, B=3, n_in=12, C=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(T, B, n_in, generator=g) < 0.3).double()
    return x, torch.randint(0, C, (B,), generator=g)


def _model(neuron, **kw):
    torch.manual_seed(0)
    opts = dict(n_in=12, hidden=10, n_out=4, neuron=neuron, dt=5.0, input_gain=4.0)
    opts.update(kw)
    return RSNN(**opts).double()


def test_decay_is_exp_minus_dt_over_tau_and_its_gradient():
    tau = torch.tensor([2.0, 20.0, 200.0], dtype=torch.float64)
    log_tau = torch.log(tau).requires_grad_(True)
    for dt in (0.5, 1.0, 10.0):
        a = decay(log_tau, dt)
        torch.testing.assert_close(a, torch.exp(-dt / tau))
        (g,) = torch.autograd.grad(a.sum(), log_tau)
        # d alpha / d log tau = tau * d alpha / d tau = alpha * dt / tau
        torch.testing.assert_close(g, a.detach() * dt / tau)
    torch.testing.assert_close(tau_from_decay(decay(log_tau, 3.0).detach(), 3.0), tau)
    with pytest.raises(ValueError, match="decay must lie in"):
        tau_from_decay(torch.tensor([1.5]), 1.0)


@pytest.mark.parametrize("neuron", LEARNABLE)
def test_registered_and_time_constants_follow_dt(neuron):
    assert resolve_neuron(neuron).__name__.endswith("Layer")
    m = _model(neuron)
    layer = m.layers[0]
    tau = torch.exp(layer.log_tau_mem.detach())
    a5 = layer.decays()[0] if neuron == "adlif" else layer.beta
    layer.dt = 10.0
    a10 = layer.decays()[0] if neuron == "adlif" else layer.beta
    torch.testing.assert_close(a5.detach(), torch.exp(-5.0 / tau))
    torch.testing.assert_close(a10.detach(), a5.detach() ** 2)


@pytest.mark.parametrize("neuron", LEARNABLE)
def test_tau_gradient_matches_finite_differences(neuron):
    """Sub-threshold (no spike, zero surrogate slope: triangle surrogate, v < 0), so the
    membrane trace is a smooth function of tau and central differences are exact to O(eps^2)."""
    m = _model(neuron, threshold=1e9, surrogate="triangle", recurrent=False)
    layer = m.layers[0]
    with torch.no_grad():
        layer.w_in.copy_(-layer.w_in.abs())
    x, _ = _data()

    def loss():
        h = layer.init_state(x.shape[1])
        total = 0.0
        for x_t in x.unbind(0):
            h, _ = layer.step(h, x_t)
            assert float(h[0].detach().max()) < 0
            total = total + (h[0] ** 2).sum() + h[1].sum() * (len(h) == 3)
        return total

    # (alif's threshold adaptation is driven by spikes only: no sub-threshold tau_adapt path)
    params = [layer.log_tau_mem] + ([layer.log_tau_adapt] if neuron == "adlif" else [])
    grads = torch.autograd.grad(loss(), params)
    eps = 1e-6
    for p, g in zip(params, grads):
        assert g.abs().sum() > 0
        for i in range(0, p.numel(), 3):
            with torch.no_grad():
                p[i] += eps
                up = float(loss())
                p[i] -= 2 * eps
                dn = float(loss())
                p[i] += eps
            assert math.isclose(float(g[i]), (up - dn) / (2 * eps), rel_tol=1e-5, abs_tol=1e-9)


@pytest.mark.parametrize("neuron", LEARNABLE)
@pytest.mark.parametrize("strategy,opts", [("checkpoint", {"segment": 7}), ("revolve", {"slots": 3}),
                                           ("double", {"period": 12, "fine": 3}),
                                           ("offload", {})])
def test_learnable_neurons_train_under_every_memory_strategy(neuron, strategy, opts):
    m = _model(neuron)
    x, y = _data(T=40)
    params = list(m.parameters())
    ref = torch.autograd.grad(F.cross_entropy(m.logits(st.unroll(m, x, strategy="bptt")), y),
                              params)
    strat = st.strategies.get(strategy, **opts)
    out = st.unroll(m, x, strategy=strat)
    got = torch.autograd.grad(F.cross_entropy(m.logits(out), y), params)
    for (name, _), a, b in zip(m.named_parameters(), got, ref):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9, msg=f"{strategy}: {name}")
    names = [n for n, _ in m.named_parameters()]
    assert any("tau" in n for n in names)


def test_adlif_ssm_form_is_the_same_neuron():
    m = _model("adlif")
    x, _ = _data()
    ref = st.unroll(m, x, strategy="bptt").detach()
    A, B_in, B_z = (t.detach() for t in m.layers[0].ssm())
    m.layers[0].to_ssm_form()
    assert m.layers[0].form == "ssm" and not hasattr(m.layers[0], "log_tau_mem")
    torch.testing.assert_close(st.unroll(m, x, strategy="bptt").detach(), ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(m.layers[0].A.detach(), A)
    # the ssm form trains too: every one of its parameters gets a gradient
    out = st.unroll(m, x, strategy="checkpoint")
    grads = torch.autograd.grad(out.sum(), [m.layers[0].A, m.layers[0].B_in, m.layers[0].B_z])
    assert all(g.abs().sum() > 0 for g in grads)


def test_adlif_spikes_and_adapts():
    m = _model("adlif", input_gain=8.0)
    x, _ = _data(T=60)
    layer = m.layers[0]
    h = layer.init_state(x.shape[1])
    spikes, w_abs = 0.0, 0.0
    with torch.no_grad():
        for x_t in x.unbind(0):
            h, z = layer.step(h, x_t)
            spikes += float(z.sum())
            w_abs += float(h[1].abs().sum())
    assert spikes > 0 and w_abs > 0


@pytest.mark.parametrize("neuron", LEARNABLE)
def test_eprop_refuses_learnable_time_constants_clearly(neuron):
    m = _model(neuron)
    x, y = _data()
    with pytest.raises(ValueError, match="tau"):
        st.unroll(m, x, strategy="eprop", step_loss=lambda o, t: F.cross_entropy(o, t),
                  targets=y.expand(x.shape[0], -1))


@pytest.mark.parametrize("neuron", ["lif_learn", "alif_learn"])
def test_eprop_with_frozen_per_neuron_time_constants_equals_bptt(neuron):
    """Per-neuron (not learned) decays keep e-prop exact where it is exact: one layer, no
    recurrent weights, a per-step loss."""
    torch.manual_seed(0)
    m = RSNN(n_in=12, hidden=10, n_out=4, neuron=neuron, dt=5.0, input_gain=4.0,
             recurrent=False, neuron_options={"learn_tau": False, "tau_spread": 0.5}).double()
    x, _ = _data(T=50)
    y = torch.randint(0, 4, (50, x.shape[1]), generator=torch.Generator().manual_seed(3))
    params = [p for p in m.parameters() if p.requires_grad]
    assert len(params) == 3  # w_in, w_out, b_out

    def step_loss(o, t):
        return F.cross_entropy(o, t)

    out = st.unroll(m, x, strategy="bptt")
    ref = torch.autograd.grad(sum(step_loss(o, t) for o, t in zip(out.unbind(0), y.unbind(0))),
                              params)
    loss = st.unroll(m, x, strategy="eprop", step_loss=step_loss, targets=y)
    got = torch.autograd.grad(loss, params)
    for a, b in zip(got, ref):
        assert b.abs().sum() > 0
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-10)
