"""Saved bytes of BPTT with binary spike storage vs float32 storage."""
import math

import pytest
import torch

import spiketrain as st
from spiketrain.models import RSNN

T, B, N, H = 150, 4, 20, 16


def _saved(**kw):
    torch.manual_seed(0)
    m = RSNN(n_in=N, hidden=H, n_out=5, sparse="dense", **kw)
    x = (torch.rand(T, B, N) < 0.1).float()
    y = st.unroll(m, x, "bptt")
    y.sum().backward()  # the saved tensors are usable
    return st.last_report().peak_bytes["device"], m


def test_binary_storage_at_least_3x_smaller_than_float():
    plain, _ = _saved(fused=False)            # autograd through the step ops, float32
    as_float, m = _saved(spike_storage="float")
    as_bool, _ = _saved(spike_storage="bool")
    as_bits, _ = _saved(spike_storage="bits")
    # exactly what the fused node keeps: the spikes, shared with the readout, and (bool and
    # float storage) the membrane at the start of every block after the first
    starts = (math.ceil(T / m.fused_block) - 1) * B * H * 4
    assert as_float == T * B * H * 4 + starts
    assert as_bool == T * B * H + starts
    assert as_bits == math.ceil(T * B * H / 8)
    assert plain / as_bool >= 3 and as_float / as_bool >= 3
    assert plain / as_bits >= 20 and as_float / as_bits >= 10


@pytest.mark.parametrize("storage", ["bits", "bool"])
def test_two_layers_share_spike_store(storage):
    torch.manual_seed(0)
    m = RSNN(n_in=N, hidden=H, n_out=5, layers=2, sparse="dense", spike_storage=storage)
    x = (torch.rand(T, B, N) < 0.1).float()
    st.unroll(m, x, "bptt")
    per = T * B * H + (math.ceil(T / m.fused_block) - 1) * B * H * 4 if storage == "bool" \
        else T * B * H // 8
    # each layer's spikes are kept once, though the next layer and the readout also use them
    assert st.last_report().peak_bytes["device"] == 2 * per


def test_disk_tier_round_trips_zero_dim_tensors():
    from spiketrain.hardware.tiers import DiskTier
    tier = DiskTier()
    try:
        x = torch.tensor(3.25)
        tier.put("k", [x, torch.arange(6.0).reshape(2, 3)])
        a, b = tier.get("k")
        assert a.shape == () and float(a) == 3.25
        assert torch.equal(b, torch.arange(6.0).reshape(2, 3))
    finally:
        tier.close()
