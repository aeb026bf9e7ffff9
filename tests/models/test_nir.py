"""NIR export/import: spiketrain round trip (same outputs), graphs written by snnTorch code,
and refusal of unsupported nodes by name."""
import numpy as np
import pytest
import torch

import spiketrain as st
from spiketrain.models import RSNN

nir = pytest.importorskip("nir")
from spiketrain.models.nir_io import export_nir, from_nir, to_nir  # noqa: E402
from spiketrain.models.snn import adlif as _adlif  # noqa: E402,F401
from spiketrain.models.snn import learnable as _learnable  # noqa: E402,F401

DT = 5.0


def _x(T=40, B=3, n_in=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(T, B, n_in, generator=g) < 0.3).float()


@pytest.mark.parametrize("neuron,kw", [("lif", {}), ("lif", {"reset": "zero", "threshold": 0.7}),
                                       ("alif", {}), ("lif_learn", {}), ("alif_learn", {}),
                                       ("adlif", {"input_gain": 8.0}),
                                       ("lif", {"layers": 2, "recurrent": False})])
def test_round_trip_gives_the_same_outputs(neuron, kw, tmp_path):
    torch.manual_seed(0)
    opts = dict(n_in=10, hidden=8, n_out=4, neuron=neuron, dt=DT, input_gain=5.0,
                tau_mem=20.0, tau_out=15.0, readout="mean")
    if neuron in ("lif_learn", "alif_learn"):
        opts["neuron_options"] = {"tau_spread": 0.5}
    opts.update(kw)
    model = RSNN(**opts)
    path = export_nir(model, tmp_path / "model.nir", dt=DT)
    back = from_nir(path)
    x = _x()
    with torch.no_grad():
        ref = st.unroll(model, x, strategy="bptt")
        got = st.unroll(back, x, strategy="bptt")
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-6)
    assert back.readout == "mean"
    # spikes happened, so the comparison covers the spiking path
    layer = model.layers[0]
    h, n = layer.init_state(3), 0.0
    with torch.no_grad():
        for x_t in x.unbind(0):
            h, z = layer.step(h, x_t)
            n += float(z.sum())
    assert n > 0
    # the imported model trains: its time constants get gradients
    out = st.unroll(back, x, strategy="checkpoint")
    out.sum().backward()
    assert back.layers[0].log_tau_mem.grad.abs().sum() > 0


def test_graph_nodes_and_refusals(tmp_path):
    torch.manual_seed(0)
    model = RSNN(n_in=6, hidden=5, n_out=3, neuron="alif", dt=DT)
    g = to_nir(model, DT)
    assert {type(n).__name__ for n in g.nodes.values()} == {"Input", "Linear", "LIF", "Affine",
                                                            "LI", "Output"}
    assert g.nodes["lif0"].metadata["spiketrain_neuron"] == "alif"
    np.testing.assert_allclose(g.nodes["lif0"].tau, 0.020, rtol=1e-6)  # seconds
    g.nodes["pool"] = nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]),
                                    padding=np.array([0, 0]))
    with pytest.raises(ValueError, match="'pool' of type SumPool2d is not supported"):
        from_nir(g)
    foreign = to_nir(model, DT)
    foreign.metadata = {}
    with pytest.raises(ValueError, match="pass dt"):
        from_nir(foreign)
    mapped = RSNN(n_in=6, hidden=5, n_out=3, neuron="adlif", dt=DT)
    mapped.layers[0].to_ssm_form()
    with pytest.raises(ValueError, match="state-space form"):
        to_nir(mapped, DT)


def test_import_of_a_graph_written_by_snntorch_matches_snntorch():
    snn = pytest.importorskip("snntorch")
    from snntorch.export_nir import export_to_nir
    torch.manual_seed(0)
    n_in, H, C = 10, 8, 4

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = torch.nn.Linear(n_in, H, bias=False)
            self.lif1 = snn.RLeaky(beta=torch.linspace(0.8, 0.95, H), threshold=torch.ones(H),
                                   linear_features=H, reset_mechanism="zero",
                                   reset_delay=False, init_hidden=True)
            self.fc2 = torch.nn.Linear(H, C, bias=False)
            self.lif2 = snn.Leaky(beta=torch.full((C,), 0.7), threshold=torch.full((C,), 0.5),
                                  reset_mechanism="zero", reset_delay=False, init_hidden=True,
                                  output=True)

        def forward(self, x):
            return self.lif2(self.fc2(self.lif1(self.fc1(x))))

    net = Net()
    with torch.no_grad():
        net.lif1.recurrent.bias.zero_()
        net.fc1.weight.mul_(3.0)
        net.fc2.weight.mul_(2.0)
    graph = export_to_nir(net, torch.zeros(n_in))
    x = _x(T=60, n_in=n_in)
    ref = []
    net.lif1.reset_hidden()
    net.lif2.reset_hidden()
    with torch.no_grad():
        for x_t in x.unbind(0):
            spk, _ = net(x_t)
            ref.append(spk)
    ref = torch.stack(ref)
    model = from_nir(graph, dt=0.1, discretisation="euler")  # snnTorch: dt 1e-4 s, Euler
    with torch.no_grad():
        got = st.unroll(model, x, strategy="bptt")
    assert ref.sum() > 0 and ref.sum() < ref.numel()
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-6)


def test_import_of_a_graph_written_by_norse_matches_norse():
    """Norse writes ``tau = dt / tau_mem_inv`` and steps ``v += dt tau_mem_inv (-v + i)``: its
    graphs import with ``discretisation="euler"`` and ``dt`` (ms) numerically equal to its
    own step in seconds."""
    nt = pytest.importorskip("norse.torch")
    torch.manual_seed(0)
    n_in, H, C = 10, 8, 4
    lin1 = torch.nn.Linear(n_in, H, bias=False)
    with torch.no_grad():
        lin1.weight.mul_(3.0)
    lif = nt.LIFBoxCell(nt.LIFBoxParameters(tau_mem_inv=torch.linspace(80.0, 150.0, H),
                                            v_th=torch.ones(H), v_leak=torch.zeros(H),
                                            v_reset=torch.zeros(H)))
    lin2 = torch.nn.Linear(H, C)
    li = nt.LIBoxCell(nt.LIBoxParameters(tau_mem_inv=torch.full((C,), 50.0),
                                         v_leak=torch.zeros(C)))
    net = nt.SequentialState(lin1, lif, lin2, li)
    graph = nt.to_nir(net, torch.zeros(1, n_in), dt=0.001)
    x = _x(T=60, n_in=n_in)
    state, outs = None, []
    with torch.no_grad():
        for x_t in x.unbind(0):
            o, state = net(x_t, state)
            outs.append(o)
    ref = torch.stack(outs)
    model = from_nir(graph, dt=0.001, discretisation="euler")
    with torch.no_grad():
        got = st.unroll(model, x, strategy="bptt")
        h, spikes = model.layers[0].init_state(x.shape[1]), 0.0
        for x_t in x.unbind(0):  # the hidden layer spikes (the comparison covers it)
            h, z = model.layers[0].step(h, x_t)
            spikes += float(z.sum())
    assert 0 < spikes < z.numel() * x.shape[0]
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-6)
