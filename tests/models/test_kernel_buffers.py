"""Stores the compiled kernels fill (``hardware.compiled.kernel_buffer``): large ones come
from a pool of mappings, reused only once no tensor uses them, and a fused chunk gives the
same bits whichever kind it gets."""
import pytest
import torch

from spiketrain.hardware import compiled
from spiketrain.models import RSNN


def test_kernel_buffer_shapes_dtypes_and_writes(monkeypatch):
    monkeypatch.setattr(compiled, "POOL_MIN_BYTES", 0)  # every buffer pooled
    for dt in (torch.float32, torch.float64, torch.bool):
        b = compiled.kernel_buffer((3, 4, 5), dt)
        assert b.shape == (3, 4, 5) and b.dtype == dt and b.is_contiguous()
        b.fill_(1)
        assert int(b.sum()) == 60
    compiled.release_buffers()


def test_pool_reuses_only_free_buffers(monkeypatch):
    monkeypatch.setattr(compiled, "POOL_MIN_BYTES", 0)
    compiled.release_buffers()
    a = compiled.kernel_buffer((64, 32), torch.float32)
    a.fill_(7.0)
    view = a[3:5]
    del a
    b = compiled.kernel_buffer((64, 32), torch.float32)  # a's memory is still in use (view)
    assert b.data_ptr() != view.data_ptr() - 3 * 32 * 4
    b_ptr = b.data_ptr()
    del b
    c = compiled.kernel_buffer((32, 64), torch.float32)  # same size, b's freed: reused
    assert c.data_ptr() == b_ptr
    assert torch.equal(view, torch.full((2, 32), 7.0))  # untouched by the reuse
    del view, c
    assert compiled.release_buffers() >= 2 * 64 * 32 * 4


@pytest.mark.parametrize("keep", [False, True])
def test_fused_chunk_same_bits_with_pooled_buffers(keep, monkeypatch):
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
    monkeypatch.setattr(compiled, "POOL_MIN_BYTES", 0)
    pooled = [run(), run()]  # the second reuses the first's buffers
    for p in pooled:
        for a, b in zip(plain, p):
            assert torch.equal(a, b)
    compiled.release_buffers()
