"""The compiled CPU loops (numba) of the LIF/ALIF layers and the leaky readout against the
eager PyTorch ops they replace."""
import os
import pytest
import numba  # noqa: F401  (a hard dependency: a broken install fails here)
import torch

from spiketrain.hardware import compiled
from spiketrain.hardware.bits import SpikeStore
from spiketrain.models import RSNN
from spiketrain.models.snn import lif_numba
from spiketrain.models.snn.readout import leaky_scan, leaky_update, readout_grads, spike_current

# numba is a hard dependency: without it these tests fail (import error), never skip
pytestmark = pytest.mark.skipif(os.environ.get("SPIKETRAIN_KERNELS") == "torch",
                                reason="compiled kernels switched off (SPIKETRAIN_KERNELS=torch)")


def _eager(cur, w, v, a, z, beta, thr0, sub, rho, adapt):
    vs, zs = [], []
    for c in cur.unbind(0):
        c = c + z @ w.t() if w is not None else c
        if a is not None:
            a = rho * a + z
            thr = thr0 + adapt * a
        else:
            thr = thr0
        v = beta * v + c - thr * z if sub else beta * v * (1.0 - z) + c
        z = (v > thr).to(v.dtype)
        vs.append(v)
        zs.append(z)
    return torch.stack(vs), torch.stack(zs)


@pytest.mark.parametrize("alif,reset,recurrent", [(False, "subtract", True), (False, "zero", True),
                                                  (True, "subtract", True), (True, "zero", False)])
def test_membrane_block_matches_eager(alif, reset, recurrent):
    g = torch.Generator().manual_seed(0)
    n, B, H = 60, 3, 24
    cur = torch.randn(n, B, H, generator=g, dtype=torch.float64) * 0.6 + 0.1
    w = torch.randn(H, H, generator=g, dtype=torch.float64) * 0.3 if recurrent else None
    v0 = torch.rand(B, H, generator=g, dtype=torch.float64)
    z0 = (torch.rand(B, H, generator=g) < 0.3).double()
    z0[0, 0] = 0.5  # a non-binary initial z is multiplied, not just gathered
    a0 = torch.rand(B, H, generator=g, dtype=torch.float64) if alif else None
    kw = dict(beta=0.9, threshold=1.0, reset=reset, rho=0.95 if alif else 0.0, adapt=0.3 if alif else 0.0)
    vs_ref, zs_ref = _eager(cur, w, v0, a0, z0, 0.9, 1.0, reset == "subtract", kw["rho"], kw["adapt"])
    spikes = torch.empty(n, B, H, dtype=torch.bool)
    v, z, a = v0.clone(), z0.clone(), a0.clone() if alif else None
    vs, _ = lif_numba.membrane_block(cur, w.t().contiguous() if recurrent else None, v, a, z,
                                       spikes, keep_v=True, **kw)
    assert torch.equal(spikes, zs_ref.bool())
    assert torch.allclose(vs, vs_ref, rtol=0, atol=1e-12)
    # replay from the stored spikes gives the very same membranes
    v2, z2, a2 = v0.clone(), z0.clone(), a0.clone() if alif else None
    vs2, _ = lif_numba.membrane_block(cur, w.t().contiguous() if recurrent else None, v2, a2, z2,
                                        spikes, replay=True, keep_v=True, **kw)
    assert torch.equal(vs2, vs)


@pytest.mark.parametrize("neuron", ["lif", "alif"])
def test_fused_chunk_same_gradients_compiled_and_eager(neuron, monkeypatch):
    torch.manual_seed(0)
    m = RSNN(n_in=30, hidden=20, n_out=4, layers=2, neuron=neuron, sparse="sparse").double()
    x = (torch.rand(70, 3, 30) < 0.15).double()

    def grads():
        y = m.chunk(m.init_state(3), x)[1]
        (y * torch.linspace(-1, 1, y.numel()).view_as(y).double()).sum().backward()
        out = [p.grad.clone() for p in m.parameters()]
        m.zero_grad()
        return y.detach(), out

    y1, g1 = grads()
    monkeypatch.setenv(compiled.ENV, "torch")
    assert not compiled.available(x)
    y0, g0 = grads()
    assert torch.allclose(y0, y1, rtol=0, atol=1e-10)
    for a, b in zip(g0, g1):
        assert torch.allclose(a, b, rtol=1e-8, atol=1e-10)


def test_leaky_readout_compiled_equals_eager(monkeypatch):
    """The fused layer's readout (current from bool spikes, then its backward): compiled ==
    eager, and both equal autograd through the step formula."""
    g = torch.Generator().manual_seed(2)
    sp = torch.rand(40, 3, 16, generator=g) < 0.2
    w = torch.randn(5, 16, generator=g, requires_grad=True)
    b = torch.randn(5, generator=g, requires_grad=True)
    o0 = torch.randn(3, 5, generator=g, requires_grad=True)

    def run():
        with torch.no_grad():
            o = leaky_scan(spike_current(sp, w), o0, 0.9, b)
        gu, gw, gb, go0 = readout_grads(2 * o, SpikeStore(sp, "bool"), w, 0.9, True, True)
        return o, (gu @ w, gw, gb, go0)

    o1, g1 = run()
    z = sp.float().requires_grad_()
    o, outs = o0, []
    for zt in z.unbind(0):
        o = leaky_update(o, zt @ w.t(), b, 0.9)
        outs.append(o)
    ref = torch.stack(outs)
    g_ref = torch.autograd.grad((ref * ref).sum(), [z, w, b, o0])
    monkeypatch.setenv(compiled.ENV, "torch")
    o0_, g0 = run()
    # the compiled current sums a row's spiking columns in ascending order, the eager one is a
    # matmul: equal up to float32 rounding
    assert torch.allclose(o1, o0_, rtol=1e-6, atol=1e-5)
    assert torch.allclose(o1, ref.detach(), rtol=1e-5, atol=1e-5)
    for a, c, r in zip(g0, g1, g_ref):
        assert torch.allclose(a, c, rtol=1e-5, atol=1e-6)
        # float32 sums in other orders: 1e-6 of the largest entry
        assert torch.allclose(c, r, rtol=1e-5, atol=1e-6 * float(r.abs().max()))


def test_leaky_scan_compiled_equals_eager_with_and_without_bias(monkeypatch):
    g = torch.Generator().manual_seed(3)
    u = torch.randn(30, 4, 6, generator=g, dtype=torch.float64)
    o0 = torch.randn(4, 6, generator=g, dtype=torch.float64)
    b = torch.randn(6, generator=g, dtype=torch.float64)
    fast = [leaky_scan(u, o0, 0.8, b), leaky_scan(u, o0, 0.8)]
    monkeypatch.setenv(compiled.ENV, "torch")
    slow = [leaky_scan(u, o0, 0.8, b), leaky_scan(u, o0, 0.8)]
    for f, s_ in zip(fast, slow):
        assert torch.equal(f, s_)
    o, ref = o0, []
    for u_t in u.unbind(0):  # the recursion written out
        o = 0.8 * o + u_t + b
        ref.append(o)
    assert torch.equal(fast[0], torch.stack(ref))
