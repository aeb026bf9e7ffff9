"""A neuron defined here, named by class path or registered name, trains under every strategy:
bptt equals the autograd loop over ``step``, checkpoint/double equal bptt, e-prop equals bptt
where it is exact (one layer, no recurrent weights) and the independent e-prop reference
(recurrence cut) with recurrent weights. No edit of ``model.layers``."""
import math

import pytest
import torch
import torch.nn.functional as F

import spiketrain as st
from spiketrain.hardware.compiled import ENV
from spiketrain.models import LIFLayer, NeuronLayer, register_neuron, spike


@register_neuron("test_cuba")
class CubaLIF(NeuronLayer):
    """Current-based LIF: a synaptic current filters the input before the membrane.

    State ``(i, v, z)``, each ``[B, H]``::

        i_t = alpha i_{t-1} + I_t
        v_t = beta v_{t-1} + i_t - theta z_{t-1}
        z_t = spike((v_t - theta) / theta)
    """

    state_names = ("i", "v", "z")

    def __init__(self, n_in, n_hidden, recurrent=True, tau_syn=5.0, tau_mem=20.0, dt=1.0,
                 threshold=1.0, surrogate="fast_sigmoid", input_gain=1.0, rec_gain=1.0):
        super().__init__(n_in, n_hidden, recurrent, input_gain, rec_gain)
        self.alpha = math.exp(-dt / tau_syn)
        self.beta = math.exp(-dt / tau_mem)
        self.threshold, self.surrogate = float(threshold), surrogate

    def dynamics(self, h, current):
        i, v, z = h
        i = self.alpha * i + current
        v = self.beta * v + i - self.threshold * z
        return (i, v, spike((v - self.threshold) / self.threshold, self.surrogate))


PATH = f"{CubaLIF.__module__}:CubaLIF"
T, B, N_IN, H, C = 60, 4, 20, 16, 5


def _model(recurrent=False, layers=1, neuron=PATH, seed=0):
    torch.manual_seed(seed)
    return st.models.build("rsnn", n_in=N_IN, hidden=H, n_out=C, layers=layers,
                           recurrent=recurrent, neuron=neuron, tau_mem=10.0,
                           input_gain=4.0).double()


def _data(seed=1):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(T, B, N_IN, generator=g) < 0.2).double()
    return x, torch.randint(0, C, (T, B), generator=g)


def _step_loss(o_t, y_t):
    return F.cross_entropy(o_t, y_t)


def _grads(model, loss):
    return [g.clone() for g in torch.autograd.grad(loss, list(model.parameters()))]


def _step_loop(model, x):
    """The reference: an autograd loop over ``model.step``."""
    state, ys = model.init_state(x.shape[1]), []
    for x_t in x.unbind(0):
        state, y_t = model.step(state, x_t)
        ys.append(y_t)
    return torch.stack(ys)


def _online_loss(out, y):
    return sum(_step_loss(o, t) for o, t in zip(out.unbind(0), y.unbind(0)))


def _close(got, ref, rtol=1e-5):
    for a, b in zip(got, ref):
        assert b.abs().max() > 0
        assert (a - b).abs().max() <= rtol * b.abs().max(), float((a - b).abs().max())


def test_built_from_class_path_and_registered_name():
    m = _model()
    assert all(type(l) is CubaLIF for l in m.layers)
    assert m.layers[0].alpha == pytest.approx(math.exp(-1 / 5.0))
    assert m.layers[0].beta == pytest.approx(math.exp(-1 / 10.0))  # tau_mem passed through
    assert "test_cuba" in st.models.available_neurons()
    m2 = _model(neuron="test_cuba")
    for p, q in zip(m.parameters(), m2.parameters()):
        assert torch.equal(p, q)
    m3 = st.models.build("rsnn", n_in=4, hidden=3, n_out=2, neuron=PATH,
                         neuron_options={"tau_syn": 2.0})
    assert m3.layers[0].alpha == pytest.approx(math.exp(-0.5))
    assert m.layers[0].kernel_spec() is None and m.layers[0].eprop_kernel() is None


def test_class_path_must_name_a_neuron_layer():
    with pytest.raises(ValueError, match="not a neuron layer"):
        st.models.build("rsnn", neuron="spiketrain.models:RSNN")
    with pytest.raises(ValueError, match="not a neuron layer"):
        st.models.build("rsnn", neuron="os:system")
    with pytest.raises(ValueError, match="unknown neuron 'nope'"):
        st.models.build("rsnn", neuron="nope")


@pytest.mark.parametrize("recurrent,layers", [(False, 1), (True, 2)])
def test_bptt_checkpoint_double_equal_the_step_loop(recurrent, layers):
    model = _model(recurrent, layers)
    x, y = _data()
    ref_out = _step_loop(model, x)
    ref = _grads(model, _online_loss(ref_out, y))
    for strategy, opts in (("bptt", {}), ("checkpoint", {"segment": 7}),
                           ("double", {"period": 12, "fine": 3})):
        out = st.unroll(model, x, strategy, **opts)
        assert torch.equal(out, ref_out), strategy
        _close(_grads(model, _online_loss(out, y)), ref)


def _eprop_grads(model, x, y, **opts):
    loss = st.unroll(model, x, "eprop", step_loss=_step_loss, targets=y, **opts)
    return loss.detach(), _grads(model, loss)


@pytest.mark.parametrize("eager", [False, True])
def test_eprop_equals_bptt_where_exact(eager, monkeypatch):
    if eager:
        monkeypatch.setenv(ENV, "torch")
    model = _model(recurrent=False)
    x, y = _data()
    loss_ref = _online_loss(_step_loop(model, x), y)
    ref = _grads(model, loss_ref)
    loss, got = _eprop_grads(model, x, y, chunk=16)
    notes = st.last_report().notes
    assert notes["exact"] and notes["eager"] is eager and notes["compiled"] == [False]
    torch.testing.assert_close(loss, loss_ref.detach(), rtol=1e-12, atol=0)
    _close(got, ref)


def eprop_reference(model, x, y):
    """Textbook e-prop for one recurrent layer by autograd: BPTT with the recurrent spikes
    detached in the recurrent current (what e-prop leaves out), every neuron's own state
    path (reset included) and the leaky readout kept."""
    layer = model.layers[0]
    h, o, loss = layer.init_state(x.shape[1]), model.init_state(x.shape[1])[-1], 0.0
    for x_t, y_t in zip(x.unbind(0), y.unbind(0)):
        cur = layer.input_current(x_t) + layer.recurrent_current(h[-1].detach())
        h = layer.dynamics(h, cur)
        o = model.kappa * o + h[-1] @ model.w_out.t() + model.b_out
        loss = loss + _step_loss(o, y_t)
    return loss, _grads(model, loss)


@pytest.mark.parametrize("neuron", [PATH, "lif", "alif"])
@pytest.mark.parametrize("eager", [False, True])
def test_eprop_recurrent_equals_independent_reference(neuron, eager, monkeypatch):
    """Recurrent weights: e-prop (compiled, autograd-Jacobian and eager paths) equals the
    reference above, and differs from BPTT."""
    if eager:
        monkeypatch.setenv(ENV, "torch")
    model = _model(recurrent=True, neuron=neuron)
    x, y = _data()
    loss_ref, ref = eprop_reference(model, x, y)
    loss, got = _eprop_grads(model, x, y, chunk=16)
    assert st.last_report().notes["eager"] is eager
    torch.testing.assert_close(loss, loss_ref.detach(), rtol=1e-12, atol=0)
    _close(got, ref)
    bptt = _grads(model, _online_loss(_step_loop(model, x), y))
    assert any((a - b).abs().max() > 1e-3 * b.abs().max() for a, b in zip(got, bptt))


def test_subclass_that_changes_dynamics_loses_the_fast_paths():
    """A LIFLayer subclass with its own ``dynamics`` takes the generic path, never the LIF
    kernels (which would silently compute plain LIF)."""

    class DoubleLIF(LIFLayer):
        def dynamics(self, h, current):
            return super().dynamics(h, 2.0 * current)

    torch.manual_seed(0)
    plain = st.models.RSNN(n_in=N_IN, hidden=H, n_out=C, neuron="lif").double()
    torch.manual_seed(0)
    custom = st.models.RSNN(n_in=N_IN, hidden=H, n_out=C, neuron=DoubleLIF).double()
    assert plain.layers[0].kernel_spec() is not None and plain.layers[0].eprop_kernel() is not None
    assert custom.layers[0].kernel_spec() is None and custom.layers[0].eprop_kernel() is None
    x, y = _data()
    out = custom.chunk(custom.init_state(B), x)[1]
    torch.testing.assert_close(out, _step_loop(custom, x), rtol=0, atol=0)
    assert not torch.equal(out, plain.chunk(plain.init_state(B), x)[1])
    st.unroll(custom, x, "eprop", step_loss=_step_loss, targets=y)
    assert st.last_report().notes["compiled"] == [False]


def test_set_fast_paths_switches_the_fused_kernels_off(monkeypatch):
    import spiketrain.models.snn.fused as fused
    model = _model(neuron="alif")
    x, _ = _data()
    fast = model.chunk(model.init_state(B), x)[1]
    assert model.set_fast_paths(False) is model and model.fused is False

    def refuse(*a, **k):
        raise AssertionError("fused kernel used with fast paths off")

    monkeypatch.setattr(fused, "fused_layer", refuse)
    slow = model.chunk(model.init_state(B), x)[1]
    torch.testing.assert_close(slow, fast, rtol=1e-10, atol=1e-10)
    model.fused = True
    assert model.fast_paths is True
    with pytest.raises(AssertionError, match="fused kernel used"):
        model.chunk(model.init_state(B), x)


@pytest.mark.parametrize("strategy", ["bptt", "checkpoint", "double", "eprop"])
def test_named_in_a_config_trains(strategy, tmp_path):
    """``model: {name: rsnn, neuron: <class path>}`` builds the neuron and one epoch trains
    under each strategy with no edit of ``model.layers``."""
    from spiketrain.launch.build import build_model, build_trainer
    from spiketrain.launch.config import load_config

    path = tmp_path / "exp.yaml"
    path.write_text(f"""
model: {{name: rsnn, neuron: "{PATH}", hidden: 12, readout: mean, surrogate: superspike}}
data: {{kind: synthetic, T: 20, dt: 0.05, n_in: 30, n_classes: 3, n_train: 16, n_test: 8,
       cache_dir: {tmp_path / "cache"}}}
strategy: {strategy}
trainer: {{epochs: 1, batch_size: 8, lr: 0.01, progress: false, threads: 1}}
""")
    cfg = load_config(path)
    assert all(type(l).__name__ == "CubaLIF" for l in build_model(cfg).layers)
    trainer = build_trainer(cfg, out_dir=tmp_path / "run")
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.fit()
    after = list(trainer.model.parameters())
    assert all(type(l).__name__ == "CubaLIF" for l in trainer.model.layers)
    assert any(not torch.equal(a, b) for a, b in zip(after, before))
    assert all(bool(torch.isfinite(p).all()) for p in after)
