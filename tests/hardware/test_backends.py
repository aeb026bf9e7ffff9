"""Backends: selection, tiers/capacities, profiles, missing-poptorch message, IPU path
against the poptorch stand-in."""
import copy
import os
import sys

import pytest
import torch

from spiketrain.hardware import backends, get_backend
from spiketrain.hardware.backends import (CPUBackend, CUDABackend, HardwareUnavailable, Prefetcher,
                                          backend_for)
from spiketrain.hardware.ipu import MISSING_POPTORCH, IPUTrainStep
from spiketrain.hardware.profiles import A100, H100, IPU_GC200, get_profile
from spiketrain.models import RSNN

STANDIN = os.path.join(os.path.dirname(__file__), "standin")


@pytest.fixture
def no_poptorch(monkeypatch):
    monkeypatch.setitem(sys.modules, "poptorch", None)  # import raises ImportError


@pytest.fixture
def poptorch_standin(monkeypatch):
    monkeypatch.syspath_prepend(STANDIN)
    monkeypatch.delitem(sys.modules, "poptorch", raising=False)
    import poptorch
    poptorch.checkpoint_calls.clear()
    yield poptorch
    sys.modules.pop("poptorch", None)


def test_auto_picks_cpu_without_accelerators(no_poptorch, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    b = get_backend("auto")
    assert isinstance(b, CPUBackend) and b.device == torch.device("cpu")


def test_auto_order_prefers_ipu_then_cuda(poptorch_standin, monkeypatch):
    assert get_backend("auto").name == "ipu"
    poptorch_standin.HARDWARE_AVAILABLE = False
    try:
        monkeypatch.setattr(backends.CUDABackend, "is_available", classmethod(lambda c: True))
        assert get_backend("auto").name == "cuda"
    finally:
        poptorch_standin.HARDWARE_AVAILABLE = True


def test_unknown_and_unavailable_messages(no_poptorch, monkeypatch):
    with pytest.raises(ValueError, match="choose auto or one of"):
        get_backend("tpu")
    with pytest.raises(HardwareUnavailable) as e:
        get_backend("ipu")
    msg = str(e.value)
    assert "Poplar SDK" in msg and "not on PyPI" in msg and msg == MISSING_POPTORCH
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(HardwareUnavailable, match="no CUDA device"):
        get_backend("cuda")


def test_cpu_tiers_and_stats(tmp_path):
    b = CPUBackend()
    caps = b.tier_capacities()
    assert set(caps) == {"device", "host", "disk"} and all(v > 0 for v in caps.values())
    tiers = b.tiers(budget={"device": "1MiB"}, scratch=str(tmp_path))
    assert tiers.device.capacity == 1024**2
    assert tiers.host.capacity == caps["host"]
    tiers.close()
    # the peak of a fresh process (this one's heap may reuse freed pages and hide growth)
    code = ("import torch; from spiketrain.hardware.backends import CPUBackend; b = CPUBackend(); "
            "before = b.memory_stats(); b.reset_peak(); x = torch.ones(64 * 1024 * 1024 // 4); "
            "x += 1; after = b.memory_stats(); print(after['peak'] - before['allocated'])")
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout.split()[-1]
    assert int(out) >= 48 * 1024**2  # the 64 MiB just touched


def test_profiles_published_and_measured():
    assert IPU_GC200.memory["device"] == 900 * 1000**2
    assert H100.peak_flops > A100.peak_flops and H100.bandwidth["device"] > A100.bandwidth["device"]
    cpu = get_profile("cpu")
    assert cpu.peak_flops > 1e8 and cpu.bandwidth["device"] > 1e8 and cpu.memory["device"] > 0
    assert get_profile("gc200") is IPU_GC200
    # what the planner charges per byte moved: the slower link costs more
    assert H100.seconds_per_byte("host") < A100.seconds_per_byte("host") == 1 / 32e9
    assert cpu.seconds_per_byte("disk") == 1 / cpu.bandwidth["disk"]
    assert CPUBackend().profile() is cpu  # measured once per process
    with pytest.raises(ValueError, match="unknown device profile"):
        get_profile("tpu-v9")


def test_prefetcher_on_cpu_is_identity():
    p = Prefetcher("cpu")
    t = [torch.ones(3)]
    assert p.wait(p.start(t))[0] is t[0]
    assert p.wait(p.start(lambda: t))[0] is t[0]  # a load function runs at once
    assert CPUBackend().prefetcher() is None  # no copy stream: strategies load when needed


def test_backend_for_device_and_the_slow_tier_rule(monkeypatch):
    cpu = backend_for("cpu")
    assert isinstance(cpu, CPUBackend) and backend_for(torch.device("cpu")) is cpu
    # the one rule: where the device tier is host RAM, host is no slower tier
    assert cpu.shares_host_memory and cpu.slow_tiers == ("disk",) and cpu.slow_tier == "disk"
    assert cpu.compiled_kernels and cpu.training_step(None, None, None, None) is None
    cuda = CUDABackend(0)  # built without touching a GPU
    assert not cuda.shares_host_memory and cuda.slow_tiers == ("host", "disk")
    assert not cuda.compiled_kernels
    # another device type: the CPU rules on that device
    other = backend_for("meta")
    assert other.device == torch.device("meta") and other.slow_tier == "disk"
    assert not other.compiled_kernels


def test_ipu_options_and_training_step_match_cpu(poptorch_standin):
    b = get_backend("ipu")
    assert b.name == "ipu" and b.tier_capacities()["device"] == 900 * 1000**2
    b.available_memory_proportion = 0.3
    opts = b.options()
    assert opts.TensorLocations.locations["location_activation"] == {"onChip": 0}
    assert opts.available_memory_proportion == {"IPU0": 0.3}
    torch.manual_seed(0)
    model = RSNN(n_in=12, hidden=10, n_out=3)
    ref = copy.deepcopy(model)
    x = (torch.rand(20, 4, 12) < 0.3).float()
    y = torch.randint(0, 3, (4,))
    lossf = torch.nn.functional.cross_entropy
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    step = b.training_model(model, opt, lossf, segment=6)
    out, loss = step(x, y)
    # 20 steps in segments of 6: 3 boundaries, each checkpointing every state tensor (2 + 1)
    assert poptorch_standin.checkpoint_calls == [1] * 9
    assert model.fused is False  # PopART differentiates the step ops
    # same update as plain PyTorch on the CPU
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    ref_loss = lossf(ref.logits(ref(x)), y)
    ref_loss.backward()
    ref_opt.step()
    assert torch.allclose(loss, ref_loss, atol=1e-6)
    for p, q in zip(model.parameters(), ref.parameters()):
        assert torch.allclose(p, q, atol=1e-6)


def test_ipu_bad_memory_proportion(poptorch_standin):
    b = get_backend("ipu")
    b.available_memory_proportion = 1.5
    with pytest.raises(ValueError, match="available_memory_proportion"):
        b.options()
