"""Surrogate gradients: Heaviside forward, pseudo-derivative backward equal to the formulas."""
import math

import pytest
import torch

from spiketrain.models import SURROGATE_GRADS, spike, surrogate_grad

# the published formulas, written out independently of the package
FORMULAS = {
    "fast_sigmoid": lambda x: 25.0 / (2.0 * (1.0 + 25.0 * x.abs()) ** 2),
    "superspike": lambda x: 1.0 / (1.0 + 10.0 * x.abs()) ** 2,
    "atan": lambda x: 2.0 / (2.0 * (1.0 + (math.pi * 2.0 * x / 2.0) ** 2)),
    "triangle": lambda x: 0.3 * torch.clamp(1.0 - x.abs(), min=0.0),
}


def test_every_registered_surrogate_has_a_formula_here():
    assert set(SURROGATE_GRADS) == set(FORMULAS)


@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_forward_is_heaviside_backward_is_formula(name):
    x = torch.linspace(-2.0, 2.0, 400, dtype=torch.float64).reshape(20, 20)   # [B, H]
    x = x.clone().requires_grad_(True)
    z = spike(x, name)
    assert z.shape == x.shape
    assert torch.equal(z.detach(), (x.detach() > 0).double())
    w = torch.randn_like(x)                  # upstream gradient is multiplied elementwise
    (z * w).sum().backward()
    expect = w * FORMULAS[name](x.detach())
    torch.testing.assert_close(x.grad, expect, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(surrogate_grad(name, x.detach()), FORMULAS[name](x.detach()))


def test_peak_values():
    zero = torch.zeros(1)
    assert surrogate_grad("fast_sigmoid", zero).item() == pytest.approx(12.5)
    assert surrogate_grad("superspike", zero).item() == pytest.approx(1.0)
    assert surrogate_grad("atan", zero).item() == pytest.approx(1.0)
    assert surrogate_grad("triangle", zero).item() == pytest.approx(0.3)


def test_custom_scale_and_unknown_name():
    x = torch.tensor([0.1], requires_grad=True)
    spike(x, "fast_sigmoid", scale=5.0).sum().backward()
    assert x.grad.item() == pytest.approx(5.0 / (2 * (1 + 0.5) ** 2))
    with pytest.raises(ValueError, match="unknown surrogate"):
        spike(x, "nope")
