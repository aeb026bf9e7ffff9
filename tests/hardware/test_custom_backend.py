"""A user backend: registered by name, it provides the tiers every strategy stores into.
The example in docs/extending.md ("A backend") is this file's ``SmallCPU``."""
import pytest
import torch

import spiketrain as st
from spiketrain.hardware import Backend, backend_for, get_backend, register_backend
from spiketrain.models import RSNN
from spiketrain.strategies import BudgetError


def make(T, B=4):
    torch.manual_seed(0)
    return RSNN(20, 16, 5, layers=2), (torch.rand(T, B, 20) < 0.3).float()


def run(model, x, strategy, **options):
    """Gradients of a loss on the outputs and the strategy's report."""
    model.zero_grad(set_to_none=True)
    y = st.unroll(model, x, strategy=strategy, **options)
    (y ** 2).mean().backward()
    return [p.grad.clone() for p in model.parameters()], st.last_report()


def assert_same(got, ref, tol=1e-5):
    for g, r in zip(got, ref):
        assert (g - r).abs().max() <= tol * r.abs().max().clamp_min(1e-12)


@register_backend("small-cpu")
class SmallCPU(Backend):
    """The CPU seen as an accelerator with 64 KiB of device memory: checkpoints and
    offloaded tensors go to host RAM (its fastest slow tier), then to disk."""

    @classmethod
    def is_available(cls):
        return True

    @property
    def device(self):
        return torch.device("cpu")

    def tier_capacities(self):
        return {"device": 64 * 1024, "host": 1 << 30, "disk": 1 << 30}


def test_custom_backend_provides_tiers_to_strategies():
    b = get_backend("small-cpu")
    assert isinstance(b, SmallCPU) and b.slow_tiers == ("host", "disk")
    assert backend_for("cpu", "small-cpu") is not None
    with b.tiers(budget={"host": "1MiB"}) as tiers:
        assert tiers.device.capacity == 64 * 1024 and tiers.host.capacity == 1 << 20
        assert b.slow_tier == "host"
    model, x = make(60)
    g_ref, _ = run(model, x, "bptt")
    # double puts its coarse checkpoints on the backend's slow tier: host, not disk
    g, rep = run(model, x, "double", backend="small-cpu")
    assert_same(g, g_ref)
    assert rep.peak_bytes["host"] > 0 and "disk" not in rep.peak_bytes
    assert rep.peak_bytes["device"] <= 64 * 1024
    # offload keeps what autograd saves in the backend's host tier
    g, rep = run(model, x, "offload", tier="host", backend="small-cpu")
    assert_same(g, g_ref)
    assert rep.peak_bytes["host"] > 0


def test_custom_backend_capacity_refused_before_running():
    model, x = make(3000, B=8)
    with pytest.raises(BudgetError, match=r"'small-cpu' backend's tiers \(device: needs .* > "
                                          r"small-cpu capacity 64\.0 KiB"):
        st.unroll(model, x, strategy="checkpoint", segment=3000, backend="small-cpu")
    # the CPU backend (the default for CPU tensors) has the whole RAM
    st.unroll(model, x, strategy="checkpoint", segment=3000)


def test_backend_on_another_device_is_refused():
    class Elsewhere(SmallCPU):
        @property
        def device(self):
            return torch.device("meta")

    with pytest.raises(ValueError, match="computes on meta"):
        backend_for("cpu", Elsewhere())
