"""Stores the compiled kernels fill (``hardware.compiled.kernel_buffer``): large ones are
huge-page mappings, and a fused chunk gives the same bits whichever kind it gets."""
import pytest
import torch

from spiketrain.hardware import compiled
from spiketrain.models import RSNN


def test_kernel_buffer_shapes_dtypes_and_writes(monkeypatch):
    monkeypatch.setattr(compiled, "HUGE_MIN_BYTES", 0)  # every buffer mapped
    for dt in (torch.float32, torch.float64, torch.bool):
        b = compiled.kernel_buffer((3, 4, 5), dt)
        assert b.shape == (3, 4, 5) and b.dtype == dt and b.is_contiguous()
        b.fill_(1)
        assert int(b.sum()) == 60
    small = compiled.kernel_buffer((2, 2), torch.float32)
    assert small.shape == (2, 2)


@pytest.mark.parametrize("keep", [False, True])
def test_fused_chunk_same_bits_with_mapped_buffers(keep, monkeypatch):
    if not compiled.available(torch.zeros(1)):
        pytest.skip("compiled kernels unavailable")

    def run():
        torch.manual_seed(0)
        m = RSNN(n_in=30, hidden=24, n_out=4, layers=2, keep_membrane=keep,
                 sparse_backward=1.0 if keep else None)
        x = (torch.rand(70, 3, 30) < 0.1).float()
        _, y = m.chunk(m.init_state(3), x)
        g = torch.autograd.grad((y * y).sum(), list(m.parameters()))
        return [y.detach()] + list(g)

    plain = run()
    monkeypatch.setattr(compiled, "HUGE_MIN_BYTES", 0)
    mapped = run()
    for a, b in zip(plain, mapped):
        assert torch.equal(a, b)
