"""Quantiser levels (grid anchored at 0, inside the range) and straight-through gradients."""
import pytest
import torch

from spiketrain.models.gaincell.quant import KV_CELL, OUT_ADC, Q_DAC, Quantizer, quantize


@pytest.mark.parametrize("qz,expected", [
    (Q_DAC, torch.arange(16, dtype=torch.float64) / 15),
    (KV_CELL, torch.arange(8, dtype=torch.float64) * 0.9 / 7),
    (OUT_ADC, torch.arange(-15, 16, dtype=torch.float64) * 2 / 31),
])
def test_levels(qz, expected):
    x = torch.linspace(qz.lo - 0.5, qz.hi + 0.5, 20001, dtype=torch.float64)
    y = qz(x)
    levels = torch.unique(y)
    assert torch.allclose(levels, expected, atol=1e-12), levels
    assert torch.allclose(qz.grid(), expected, atol=1e-12)
    assert y.min() >= qz.lo - 1e-12 and y.max() <= qz.hi + 1e-12
    inside = (x >= qz.lo) & (x <= qz.hi)
    # nearest grid point: never further than half a step (the ADC's ends: the nearest inside)
    err = (y - x.clamp(qz.lo, qz.hi)).abs()
    assert err[inside].max() <= qz.step / 2 + 1e-12 or qz is OUT_ADC
    assert (err[inside] <= qz.step + 1e-12).all()
    # 0 is a level (grid anchored at 0) and values round to the nearest level
    assert 0.0 in levels.tolist()
    assert float(qz(torch.tensor(0.3 * qz.step, dtype=torch.float64))) == 0.0
    assert float(qz(torch.tensor(0.7 * qz.step, dtype=torch.float64))) == pytest.approx(qz.step)


def test_counts_match_the_issue():
    assert len(Q_DAC.grid()) == 16 and len(KV_CELL.grid()) == 8
    assert OUT_ADC.step == pytest.approx(2 / 31)


@pytest.mark.parametrize("qz", [Q_DAC, KV_CELL, OUT_ADC])
def test_straight_through_gradient(qz):
    torch.manual_seed(0)
    x = (torch.rand(4000, dtype=torch.float64) * 1.6 - 0.3) * (qz.hi - qz.lo) + qz.lo
    x.requires_grad_(True)
    w = torch.randn(4000, dtype=torch.float64)
    (qz(x) * w).sum().backward()
    inside = (x.detach() > qz.lo) & (x.detach() < qz.hi)
    assert inside.any() and (~inside).any()
    # rounding passes the gradient unchanged; the range clamp stops it outside
    assert torch.equal(x.grad[inside], w[inside])
    assert torch.equal(x.grad[~inside], torch.zeros_like(w[~inside]))
    assert (qz(x.detach()) != x.detach()).float().mean() > 0.9   # the forward does quantise


def test_disabled_keeps_only_the_clamp():
    x = torch.linspace(-1, 2, 301, dtype=torch.float64)
    q = Quantizer(0.0, 1.0, 16, enabled=False)
    assert torch.equal(q(x), x.clamp(0, 1))
    assert torch.equal(quantize(x, 0.0, 1.0, 16), Q_DAC(x))


@pytest.mark.parametrize("qz", [Q_DAC, KV_CELL, OUT_ADC])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_no_grad_path_gives_the_same_values(qz, dtype):
    """Without a graph the quantiser skips the autograd Function: bit-identical values (the
    strategies compare a no-grad first forward with a recomputation under grad bit for bit)."""
    torch.manual_seed(1)
    x = torch.randn(5000, dtype=dtype) * (qz.hi - qz.lo)
    with torch.no_grad():
        plain = qz(x)
    taped = qz(x.clone().requires_grad_(True))
    assert taped.grad_fn is not None
    assert torch.equal(plain, taped.detach())
