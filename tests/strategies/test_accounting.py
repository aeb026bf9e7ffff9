"""Byte accounting and schedules: peaks equal what the schedule predicts from the state size."""
import math
import os

import pytest
import torch

import spiketrain as st
from spiketrain.hardware.tiers import DiskTier, HostTier, TierFullError, Tiers
from spiketrain.models.base import state_nbytes
from spiketrain.hardware.bits import pack_bits, unpack_bits

from .common import make, run


def saved_bytes(model, x, L):
    """What autograd saves over L steps from a start state (BPTT's own count)."""
    with torch.enable_grad():
        st.unroll(model, x[:L], strategy="bptt")
    return st.last_report().peak_bytes["device"]


def griewank_extra(l, s):
    """Griewank & Walther (2000): minimal repeated forward steps to reverse l steps with s
    checkpoints: r*l - C(s+r, s+1) where r is the least integer with C(s+r, s) >= l."""
    if l <= 1:
        return 0
    r = 0
    while math.comb(s + r, s) < l:
        r += 1
    return r * l - math.comb(s + r, s + 1)


@pytest.mark.parametrize("T,seg", [(40, 7), (36, 6), (23, 23), (30, 1)])
def test_checkpoint_peak(T, seg):
    model, x = make("alif2", T)
    S = state_nbytes(model.init_state(4))
    bounds = list(range(0, T, seg)) + [T]
    lengths = [b - a for a, b in zip(bounds[:-1], bounds[1:])]
    f = {L: saved_bytes(model, x, L) for L in set(lengths)}
    predicted = max(k * S + f[L] for k, L in enumerate(lengths))
    _, _, rep = run(model, x, "checkpoint", segment=seg)
    assert rep.peak_bytes["device"] == predicted
    assert rep.notes["predicted_peak_bytes"]["device"] == predicted
    from spiketrain.strategies.checkpoint import segment_peak, uniform_peak
    from spiketrain.strategies.scheduled import SavedModel
    sm = SavedModel(0, 0, exact=f)
    assert uniform_peak(T, seg, S, sm) == segment_peak(bounds, S, sm) == predicted
    assert rep.recomputed_steps == T - lengths[-1]
    assert rep.notes["peak_checkpoints"].get("device", 0) == len(lengths) - 1
    assert rep.bytes_moved == 0


@pytest.mark.parametrize("T", [5, 12, 30])
@pytest.mark.parametrize("slots", [1, 2, 3, 5])
def test_revolve_binomial_optimum(T, slots):
    if slots > T - 1:
        pytest.skip("more slots than steps")
    model, x = make("lif1", T)
    S = state_nbytes(model.init_state(4))
    _, _, rep = run(model, x, "revolve", slots=slots, block=1)
    assert rep.recomputed_steps == griewank_extra(T, slots)
    assert rep.peak_bytes["device"] == slots * S + saved_bytes(model, x, 1)
    assert rep.notes["peak_checkpoints"]["device"] == slots


def test_revolve_trades_recomputation_for_memory():
    T = 30
    model, x = make("lif1", T)
    reps = [run(model, x, "revolve", slots=s)[2] for s in (1, 2, 4, 8)]
    rec = [r.recomputed_steps for r in reps]
    peak = [r.peak_bytes["device"] for r in reps]
    assert rec == sorted(rec, reverse=True) and rec[0] == T * (T - 1) // 2
    assert peak == sorted(peak)
    # checkpointing every 10 steps recomputes less but holds 10-step graphs
    _, _, rep2 = run(model, x, "checkpoint", segment=10)
    assert rep2.recomputed_steps == 20 and reps[1].peak_bytes["device"] < rep2.peak_bytes["device"]


@pytest.mark.parametrize("T,opts", [(53, {"period": 12, "fine": 3}), (60, {"period": 20, "fine": 2, "fine_slots": 2}),
                                    (41, {})])
def test_double_checkpoint_counts(T, opts):
    model, x = make("lif2", T)
    S = state_nbytes(model.init_state(4))
    _, _, rep = run(model, x, "double", **opts)
    stated = rep.notes["checkpoints"]
    peak = rep.notes["peak_checkpoints"]
    one_level = rep.notes["period"] == rep.notes["fine"]  # default: all checkpoints on disk
    assert 0 < peak["disk"] <= stated["disk"] == math.ceil(T / rep.notes["period"]) - one_level
    assert peak.get("device", 0) <= stated["device"]
    assert rep.peak_bytes["disk"] == peak["disk"] * S
    fine = rep.notes["fine"]
    assert rep.peak_bytes["device"] <= stated["device"] * S + saved_bytes(model, x, fine)
    assert rep.peak_bytes["device"] >= peak.get("device", 0) * S
    # every coarse checkpoint written once and read back at least once
    assert rep.bytes_moved >= 2 * peak["disk"] * S
    if one_level:  # one recomputation per segment, no checkpoint on the device
        assert rep.recomputed_steps == T - (T - (stated["disk"]) * fine)
        assert peak.get("device", 0) == 0
    assert not os.path.exists(rep.notes.get("scratch", "/nonexistent"))


def test_offload_stores_spikes_bit_packed():
    model, x = make("lif2", 30)
    model.spike_storage = "float"  # the model itself keeps float spikes; offload packs them
    _, _, rb = run(model, x, "bptt")
    _, _, rf = run(model, x, "offload", spikes="float")
    _, _, rbits = run(model, x, "offload", spikes="bits", tier="disk")
    _, _, rbool = run(model, x, "offload", spikes="bool")
    assert rf.peak_bytes["host"] == rb.peak_bytes["device"]  # same tensors, same bytes
    assert rbits.peak_bytes["disk"] < rbool.peak_bytes["host"] < rf.peak_bytes["host"]
    assert rbits.bytes_moved >= 2 * rbits.peak_bytes["disk"]  # written once, read at least once


def test_bit_packing_roundtrip():
    z = (torch.rand(3, 5, 7) < 0.4).float()
    p = pack_bits(z)
    assert p.dtype == torch.uint8 and p.numel() == math.ceil(z.numel() / 8)
    assert torch.equal(unpack_bits(p, z.shape, z.dtype), z)
    # offload stores spikes with this packer: element 8 j + i is bit i of byte j
    assert pack_bits(torch.tensor([1., 0, 0, 0, 0, 0, 0, 1, 0, 1])).tolist() == [129, 2]


def test_offload_bits_exact_bytes_and_values():
    """Offload's bit-packed spikes: ceil(n / 8) bytes per spike tensor, same gradients."""
    model, x = make("lif1", 37)
    model.spike_storage = "float"
    _, g_float, rf = run(model, x, "offload", spikes="float", tier="disk")
    _, g_bits, rb = run(model, x, "offload", spikes="bits", tier="disk")
    assert all(torch.equal(a, b) for a, b in zip(g_bits, g_float))  # unpacked bit-exactly
    spikes = 37 * 4 * 16  # the float spike tensor the model saves: [T, B, H]
    assert rf.peak_bytes["disk"] - rb.peak_bytes["disk"] == spikes * 4 - math.ceil(spikes / 8)


def test_tiers_exact_accounting_and_cleanup(tmp_path):
    t = Tiers({"device": 1000, "disk": "1MiB"}, scratch=str(tmp_path / "scratch"))
    assert t.over_capacity({"device": 1001, "disk": 10}) == {"device": (1001, 1000)}
    a = torch.arange(10, dtype=torch.float32)
    b = torch.arange(6, dtype=torch.int64).view(2, 3)
    t.device.put("a", [a])
    assert (t.device.current, t.device.peak, t.device.count) == (40, 40, 1)
    with pytest.raises(TierFullError):
        t.device.put("big", [torch.zeros(300)])
    assert t.device.current == 40
    t.disk.put(0, [a, b])
    t.disk.put(1, [b])
    assert t.disk.current == 40 + 48 + 48 and t.disk.moved == 136
    got = t.disk.get(0, pop=True)
    assert torch.equal(got[0], a) and torch.equal(got[1], b) and got[1].dtype == torch.int64
    assert t.disk.current == 48 and t.disk.peak == 136 and t.disk.moved == 136 + 88
    t.disk.put(2, [a, b])  # reuses the freed regions
    assert os.fstat(t.disk._fd).st_size == 136   # the file lives on its descriptor only
    path = t.disk.path
    assert not os.path.exists(path)                 # unlinked at once: a crash leaves nothing
    t.close()
    assert not os.path.exists(path)
    h = HostTier()
    h.put("x", [a])
    assert h.get("x")[0] is a and h.moved == 0


def test_disk_tier_removed_on_error():
    d = DiskTier()
    folder = d.folder
    with pytest.raises(RuntimeError):
        with d:
            d.put(0, [torch.ones(4)])
            raise RuntimeError("boom")
    assert not os.path.exists(folder)
