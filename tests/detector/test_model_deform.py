"""Deformable convolution via grid_sample and the SNN -> ANN bridges."""
import pytest
import torch
import torch.nn.functional as F

from spiketrain.models.detector import (AttentionBridge, DeformConv2d, NaiveBridge,
                                        deform_conv2d, event_rate_gate)


@pytest.mark.parametrize("groups,c_in,c_out,K,offset_groups", [(1, 3, 4, 3, 1), (5, 5, 5, 5, 1),
                                                               (2, 4, 6, 5, 2), (1, 2, 2, 1, 1)])
def test_zero_offsets_equal_plain_convolution(groups, c_in, c_out, K, offset_groups):
    torch.manual_seed(0)
    x = torch.randn(3, c_in, 7, 9)
    w = torch.randn(c_out, c_in // groups, K, K)
    b = torch.randn(c_out)
    off = torch.zeros(3, 2 * offset_groups * K * K, 7, 9)
    ref = F.conv2d(x, w, b, padding=K // 2, groups=groups)
    out = deform_conv2d(x, off, w, b, groups)
    assert out.shape == ref.shape
    assert torch.allclose(out, ref, atol=1e-5), float((out - ref).abs().max())


def test_integer_offset_shifts_the_sampling():
    # a 1x1 kernel with offset (dy, dx) = (0, 1) reads the right-hand neighbour
    x = torch.arange(20.0).view(1, 1, 4, 5)
    w = torch.ones(1, 1, 1, 1)
    off = torch.zeros(1, 2, 4, 5)
    off[:, 1] = 1.0
    out = deform_conv2d(x, off, w)
    ref = torch.cat([x[..., 1:], torch.zeros(1, 1, 4, 1)], -1)   # zero outside the image
    assert torch.allclose(out, ref, atol=1e-5)
    off[:, 1] = 0.5                                                   # bilinear half-way
    out = deform_conv2d(x, off, w)
    assert torch.allclose(out[..., :-1], x[..., :-1] + 0.5, atol=1e-5)


def test_deform_module_starts_as_conv_and_learns_offsets():
    torch.manual_seed(0)
    m = DeformConv2d(4, 4, 5, groups=4)
    x = torch.randn(2, 4, 6, 6)
    ref = F.conv2d(x, m.weight, m.bias, padding=2, groups=4)
    y = m(x)
    assert torch.allclose(y, ref, atol=1e-5)
    y.pow(2).sum().backward()
    assert m.offset.weight.grad is not None and float(m.offset.weight.grad.abs().sum()) > 0


def test_bridges_shapes_and_gate():
    torch.manual_seed(0)
    s = (torch.rand(10, 2, 6, 4, 5) < 0.3).float()
    att = AttentionBridge(10, 6)
    y = att(s)
    assert y.shape == (2, 6, 4, 5)
    assert torch.equal(NaiveBridge(10, 6)(s), s.sum(0))
    g = event_rate_gate(s)
    assert torch.allclose(g, torch.sigmoid(s.sum(0))) and float(g.min()) >= 0.5
    y.sum().backward()
    assert all(p.grad is not None for p in att.parameters())
    with pytest.raises(ValueError):
        att(s[:5])
