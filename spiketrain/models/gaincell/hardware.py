"""The gain-cell hardware model: charge-to-pulse, retention decay, the cells' multiply
nonlinearity and its linear surrogate.

Leroux, Manea, Sudarshan, Finkbeiner, Siegel, Strachan, Neftci, "Analog In-Memory Computing
Attention Mechanism for Fast and Energy-Efficient Large Language Models", Nature
Computational Science 5 (2025), arXiv:2409.19315 (constants as in its public code).

Keys and values are stored as voltages on gain cells (range [0, 0.9] V, "zero" at
V_DD/2 = 0.45 V). Two products are computed in place, with no softmax and no 1/sqrt(d):

- first product (queries applied as pulses of length ``Q``, ``T_max`` normalised to 1)::

      S_ij = 19.3 * Q_i . (K_j - 0.45) * D_ij                          (eq. 1, linear model)
      phi(S) = clamp(S / S_sat, 0, 1),  S_sat = 80                    (eq. 2, charge-to-pulse)

- second product, per array of 64 rows (tokens), read out by an ADC::

      A_i = 19.3 * sum_j (phi(S_ij) * D_ij) (V_j - 0.45) / 40          (eq. 3, linear model)

- retention decay: the stored charge leaks toward 0.45 V, so a key/value written ``i - j``
  tokens ago is scaled by ``D_ij = exp(-lambda (i - j))``, ``lambda = 1.6e-4`` per token.
- nonlinear model (the measured cell response, a two-variable cubic fit with ``V_in = 0.9``)::

      f(x, w) = sum_{i + j <= 3} C_ij * x * (w - 0.45)^i * V_in^j          (eq. 4)

  applied to both products (``x`` = pulse ``Q`` or ``phi(S)``, ``w`` = stored ``K`` or
  ``V``); the decay multiplies ``(w - 0.45)`` so its i-th power carries ``D^i``. The
  backward uses the linear model (slope 19.3) as a surrogate.

Masked (out-of-window) scores are 0, so ``phi`` is 0 there and they add nothing.
"""
from __future__ import annotations

import torch
from torch import Tensor

AMP = 19.3            # slope of the linear fit of a cell's multiply (both products)
S_SAT = 80.0          # first-product saturation: phi(S) = clamp(S / S_SAT, 0, 1)
A_DIV = 40.0          # second-product normalisation
OFFSET = 0.45         # V_DD / 2: a cell's zero; charge leaks toward it
V_IN = 0.9            # read voltage of the nonlinear model
DECAY = 1.6e-4        # retention decay per token (lambda)
ARRAY = 64            # tokens (rows) per gain-cell array

# Fitted coefficients C_ij of eq. 4, in the order of the public code.
C_ORDER = ((0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (3, 0))
C_VALUES = (0.17393044, 0.15653739, 0.14088365, 0.12679529, 5.51975209, 4.96777688,
            4.4709992, -1.44776001, -1.30298401, 46.05483778)
COEFFS = dict(zip(C_ORDER, C_VALUES))
ORDER = 3


def power_weights(v_in: float = V_IN) -> tuple[float, ...]:
    """``c_i = sum_j C_ij V_in^j`` for ``i = 0..3``: eq. 4 as a polynomial in ``(w - 0.45)``."""
    return tuple(sum(c * v_in ** j for (i2, j), c in COEFFS.items() if i2 == i)
                 for i in range(ORDER + 1))


def cell_mac(x: Tensor, w: Tensor, v_in: float = V_IN) -> Tensor:
    """Eq. 4 elementwise, straight from the table: ``sum C_ij x (w - 0.45)^i V_in^j``."""
    out = torch.zeros_like(x * w)
    for (i, j), c in COEFFS.items():
        out = out + c * x * (w - OFFSET) ** i * v_in ** j
    return out


def phi(s: Tensor) -> Tensor:
    """Charge-to-pulse conversion (eq. 2): ``clamp(S / S_sat, 0, 1)``."""
    return (s / S_SAT).clamp(0.0, 1.0)


def decay_matrix(dist: Tensor, lam: float = DECAY, dtype: torch.dtype | None = None) -> Tensor:
    """``D = exp(-lambda * dist)`` for token distances ``dist = i - j`` (any shape)."""
    return torch.exp(-lam * dist.to(torch.float64)).to(dtype or torch.get_default_dtype())


def surrogate(forward: Tensor, linear: Tensor) -> Tensor:
    """Value of ``forward`` with the gradient of ``linear`` (the linear-model surrogate)."""
    return linear + (forward - linear).detach()


def linear_factor(decay: Tensor, mask: Tensor) -> Tensor:
    """``19.3 * D`` where visible, 0 where masked (``[n, N]``): eq. 1's factor with the mask
    folded in."""
    return torch.where(mask, AMP * decay, decay.new_zeros(()))


def linear_factors(decay: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """The linear model's constants folded into two ``[n, N]`` factors: ``19.3 D / S_sat``
    where visible (0 where masked), so ``phi(S) = clamp(Q (K - 0.45)^T * f1, 0, 1)``
    (eq. 1, 2), and ``19.3 D / 40``, so eq. 3 is ``(phi(S) * f2) (V - 0.45)``."""
    return (torch.where(mask, (AMP / S_SAT) * decay, decay.new_zeros(())),
            (AMP / A_DIV) * decay)


def linear_array_sums(q: Tensor, k: Tensor, v: Tensor, factors: tuple[Tensor, Tensor],
                      array: int = ARRAY) -> Tensor:
    """The linear model's two products (eq. 1-3) at once, before the ADC:
    ``q [..., n, d]``, ``k, v [..., N, d]``, ``factors`` from :func:`linear_factors`
    -> ``[..., N/array, n, d]``; equal to ``array_sums(phi(scores(...)), ...)`` up to
    rounding (the constants are multiplied in once, and in place where no graph is kept)."""
    f1, f2 = factors
    m1 = q @ (k - OFFSET).transpose(-1, -2)
    vc = v - OFFSET
    if torch.is_grad_enabled() and (m1.requires_grad or vc.requires_grad):
        return _tiled((m1 * f1).clamp(0.0, 1.0) * f2, vc, array)
    return _tiled(m1.mul_(f1).clamp_(0.0, 1.0).mul_(f2), vc, array)   # same values


def scores(q: Tensor, k: Tensor, decay: Tensor, mask: Tensor, nonlinear: bool) -> Tensor:
    """First product ``S [..., n, N]`` from pulses ``q [..., n, d]`` and stored keys
    ``k [..., N, d]``; ``decay``/``mask`` ``[n, N]`` (mask False -> score 0).

    Linear: eq. 1 (the model itself runs :func:`linear_array_sums`). Nonlinear: eq. 4 summed
    over the head dimension, with the decay's i-th power on the i-th power of ``(k - 0.45)``
    and the eq. 1 gradient.
    """
    kc = k - OFFSET
    m1 = q @ kc.transpose(-1, -2)
    if not nonlinear:
        return m1 * linear_factor(decay, mask)
    lin = AMP * m1 * decay
    c = power_weights()
    kp = torch.stack([kc * kc, kc * kc * kc], -3)               # [..., 2, N, d]
    m23 = q.unsqueeze(-3) @ kp.transpose(-1, -2)                 # [..., 2, n, N]
    d2 = decay * decay
    s = (c[0] * q.sum(-1, keepdim=True) + c[1] * m1 * decay
         + c[2] * m23.select(-3, 0) * d2 + c[3] * m23.select(-3, 1) * (d2 * decay))
    return torch.where(mask, surrogate(s, lin), lin.new_zeros(()))


def _tiled(p: Tensor, v: Tensor, array: int) -> Tensor:
    """``p [..., n, N] @ v [..., N, d]`` per array of ``array`` columns
    -> ``[..., N/array, n, d]``."""
    na = p.shape[-1] // array
    pt = p.unflatten(-1, (na, array)).transpose(-3, -2)           # [..., na, n, array]
    vt = v.unflatten(-2, (na, array))                              # [..., na, array, d]
    return pt @ vt


def array_sums(p: Tensor, v: Tensor, decay: Tensor, nonlinear: bool, array: int = ARRAY) -> Tensor:
    """Second product per array, before the ADC: ``[..., N/array, n, d]`` from
    ``p = phi(S) [..., n, N]`` (0 where masked) and stored values ``v [..., N, d]``.

    Linear: eq. 3. Nonlinear: eq. 4 with ``D^i`` on ``(v - 0.45)^i``, divided by 40, with the
    eq. 3 gradient.
    """
    vc = v - OFFSET
    pd = p * decay
    m1 = _tiled(pd, vc, array)
    lin = (AMP / A_DIV) * m1
    if not nonlinear:
        return lin
    c = power_weights()
    d2 = decay * decay
    pp = torch.stack([pd * decay, pd * d2], -3)                    # p D^2, p D^3
    vp = torch.stack([vc * vc, vc * vc * vc], -3)
    t23 = _tiled(pp, vp, array)                                    # [..., 2, na, n, d]
    rows = p.unflatten(-1, (p.shape[-1] // array, array)).sum(-1)   # [..., n, na]
    t0 = rows.transpose(-1, -2).unsqueeze(-1)                      # [..., na, n, 1]
    s = (c[0] * t0 + c[1] * m1 + c[2] * t23.select(-4, 0)
         + c[3] * t23.select(-4, 1)) / A_DIV
    return surrogate(s, lin)
