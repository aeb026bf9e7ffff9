"""The attention kinds against independent references: the nonlinear cell polynomial
against eq. 4 term by term, linear_gaincell in its linear range against plain linear
attention, and the sliding window with 64-token arrays against a naive per-query loop."""
import math

import pytest
import torch
import torch.nn.functional as F

from spiketrain.models.gaincell import GainCellGPT, hardware as hw
from spiketrain.models.gaincell.quant import OUT_ADC

# eq. 4 coefficients as printed in the issue, order (0,0),(0,1),(0,2),(0,3),(1,0),(1,1),(1,2),
# (2,0),(2,1),(3,0)
C = [0.17393044, 0.15653739, 0.14088365, 0.12679529, 5.51975209, 4.96777688, 4.4709992,
     -1.44776001, -1.30298401, 46.05483778]


def eq4(x, w, v=0.9):
    """f(x, w) written out by hand: x * sum C_ij (w - 0.45)^i v^j."""
    u = w - 0.45
    return x * (C[0] + C[1] * v + C[2] * v ** 2 + C[3] * v ** 3
                + (C[4] + C[5] * v + C[6] * v ** 2) * u
                + (C[7] + C[8] * v) * u ** 2 + C[9] * u ** 3)


def test_cell_polynomial_matches_eq4_at_random_points():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(1000, generator=g, dtype=torch.float64)
    w = torch.rand(1000, generator=g, dtype=torch.float64) * 0.9
    assert torch.allclose(hw.cell_mac(x, w), eq4(x, w), rtol=1e-12, atol=1e-12)
    c = hw.power_weights()
    u = w - 0.45
    assert torch.allclose(x * sum(c[i] * u ** i for i in range(4)), eq4(x, w), atol=1e-12)


def _random_band(n=5, N=128, d=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.rand(2, 3, n, d, generator=g, dtype=torch.float64)
    k = torch.rand(2, 3, N, d, generator=g, dtype=torch.float64) * 0.9
    v = torch.rand(2, 3, N, d, generator=g, dtype=torch.float64) * 0.9
    decay = 0.5 + 0.5 * torch.rand(n, N, generator=g, dtype=torch.float64)
    mask = torch.rand(n, N, generator=g) < 0.7
    return q, k, v, decay, mask


def test_nonlinear_scores_against_formula():
    q, k, v, decay, mask = _random_band()
    s = hw.scores(q, k, decay, mask, nonlinear=True)
    # decay multiplies (K - 0.45): the stored value seen is 0.45 + D (K - 0.45)
    w = 0.45 + decay[..., None] * (k.unsqueeze(-3) - 0.45)            # [B, H, n, N, d]
    ref = eq4(q.unsqueeze(-2), w).sum(-1)
    ref = torch.where(mask, ref, torch.zeros(()).double())
    assert torch.allclose(s, ref, rtol=1e-10, atol=1e-10)


def test_nonlinear_second_product_against_formula():
    q, k, v, decay, mask = _random_band()
    p = torch.rand(q.shape[:-1] + (k.shape[-2],), dtype=torch.float64) * mask
    out = hw.array_sums(p, v, decay, nonlinear=True, array=64)        # [B, H, 2, n, d]
    w = 0.45 + decay[..., None] * (v.unsqueeze(-3) - 0.45)             # [B, H, n, N, d]
    per_key = eq4(p.unsqueeze(-1), w) / 40
    ref = per_key.unflatten(-2, (2, 64)).sum(-2).movedim(-2, -3)       # arrays of 64 keys
    assert torch.allclose(out, ref, rtol=1e-10, atol=1e-10)


def test_nonlinear_backward_is_the_linear_surrogate():
    q, k, v, decay, mask = _random_band()
    g = torch.Generator().manual_seed(3)
    gs = torch.randn(q.shape[:-1] + (k.shape[-2],), generator=g, dtype=torch.float64)
    p0 = torch.rand(gs.shape, generator=g, dtype=torch.float64)
    ga = torch.randn(2, 3, 2, q.shape[-2], q.shape[-1], generator=g, dtype=torch.float64)
    grads = []
    for nl in (True, False):   # same upstream gradients into both models
        qq, kk, vv = (t.clone().requires_grad_() for t in (q, k, v))
        p = p0.clone().requires_grad_()
        s = hw.scores(qq, kk, decay, mask, nonlinear=nl)
        a = hw.array_sums(p, vv, decay, nonlinear=nl, array=64)
        grads.append(torch.autograd.grad((s * gs).sum() + (a * ga).sum(), [qq, kk, p, vv]))
    for gn, gl in zip(*grads):
        assert torch.allclose(gn, gl, rtol=1e-12, atol=1e-12)
    # and the surrogate slope is 19.3: dS/dq_d = 19.3 (k_d - 0.45) D on unmasked keys
    qq = q.clone().requires_grad_()
    hw.scores(qq, k, decay, mask, nonlinear=True)[0, 0, 0].sum().backward()
    ref = (19.3 * (k[0, 0] - 0.45) * (decay[0] * mask[0])[:, None]).sum(0)
    assert torch.allclose(qq.grad[0, 0, 0], ref, rtol=1e-12)


# --- whole-model references --------------------------------------------------------------

def reference_logits(model, x, attend):
    """The model's GPT written out over the whole sequence at once; ``attend(q, k, v)``
    gets the scaled (and quantised) cells ``[B, H, T, d]`` and returns ``[B, H, T, d]``."""
    B, T = x.shape[1], x.shape[0]
    h = model.wte(x.t())
    for blk in model.h:
        at = blk.attn
        q, k, v = at.cells(blk.ln_1(h), slice(None))
        y = at.out(attend(q, k, v))
        h = h + at.c_proj(y.transpose(1, 2).reshape(B, T, -1))
        h = h + blk.mlp(blk.ln_2(h))
    return model.lm_head(model.ln_f(h)).transpose(0, 1)


def window_mask(T, M):
    i = torch.arange(T).view(-1, 1)
    j = torch.arange(T).view(1, -1)
    return (j <= i) & (j > i - M)


def naive_attention(kind, M, quantize=True, lam=hw.DECAY):
    """Per query i, per 64-token array of absolute positions: python loops."""
    adc = OUT_ADC if quantize else OUT_ADC.off()

    def attend(q, k, v):
        T, d = q.shape[2], q.shape[3]
        out = torch.zeros_like(q)
        for i in range(T):
            lo = max(0, i - M + 1)
            if kind == "softmax":
                sc = (q[:, :, i:i + 1] * (k[:, :, lo:i + 1] - .45)).sum(-1) / math.sqrt(d)
                out[:, :, i] = (sc.softmax(-1).unsqueeze(-1) * (v[:, :, lo:i + 1] - .45)).sum(2)
                continue
            for t0 in range(lo - lo % 64, i + 1, 64):
                js = torch.arange(max(lo, t0), min(i + 1, t0 + 64))
                D = torch.exp(-lam * (i - js).double()).to(q.dtype).view(1, 1, -1, 1)
                kj, vj, qi = k[:, :, js], v[:, :, js], q[:, :, i:i + 1]
                if kind == "gaincell":
                    s = eq4(qi, 0.45 + D * (kj - 0.45)).sum(-1, keepdim=True)
                    p = hw.phi(s)
                    arr = (eq4(p, 0.45 + D * (vj - 0.45)) / 40).sum(2)
                else:
                    s = 19.3 * (qi * (kj - .45)).sum(-1, keepdim=True) * D
                    arr = (19.3 * hw.phi(s) * D * (vj - .45) / 40).sum(2)
                out[:, :, i] += adc(arr)
        return out
    return attend


def _model(kind, M=128, seed=0, **kw):
    torch.manual_seed(seed)
    m = GainCellGPT(n_layer=2, n_head=2, n_embd=16, window=M, attention=kind, **kw).double()
    with torch.no_grad():   # spread the cells over their ranges so every level is exercised
        for s in m.scalers():
            if s.name in ("q", "k", "v"):
                s.a.fill_(8.0)
                s.b.add_(0.3 if s.name == "q" else 0.0)
    return m


@pytest.mark.parametrize("kind", ["linear_gaincell", "gaincell", "softmax"])
def test_window_and_arrays_against_naive_loop(kind):
    M, T = 128, 200          # several windows: partial first arrays, window edges mid-array
    m = _model(kind, M)
    x = torch.randint(0, 256, (T, 2), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        ref = reference_logits(m, x, naive_attention(kind, M))
        y = m(x)
    assert torch.allclose(y, ref, rtol=1e-9, atol=1e-9), (y - ref).abs().max()


def test_linear_gaincell_is_linear_attention_in_its_linear_range():
    """Quantisation off, decay 0, phi never saturating, arrays never clipping:
    A = (19.3^2 / (80 * 40)) ((Q (K - 0.45)^T) * window) (V - 0.45)."""
    M, T = 128, 300
    torch.manual_seed(0)
    m = GainCellGPT(n_layer=2, n_head=2, n_embd=16, window=M, attention="linear_gaincell",
                    quantize=False, decay=0.0).double()
    with torch.no_grad():
        for s in m.scalers():   # q > 0 and k > 0.45: scores positive and below S_sat
            if s.name == "q":
                s.a.fill_(0.5), s.b.fill_(0.3)
            elif s.name == "k":
                s.a.fill_(0.5), s.b.fill_(0.6)
    mask = window_mask(T, M)
    seen = {}

    def linear(q, k, v):
        qk = q @ (k - 0.45).transpose(-1, -2)
        s = 19.3 * qk
        seen.setdefault("s", []).append(s[..., mask])
        return (19.3 ** 2 / (80 * 40)) * (qk * mask) @ (v - 0.45)

    x = torch.randint(0, 256, (T, 2), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = reference_logits(m, x, linear)
        arrays = reference_logits(m, x, naive_attention("linear_gaincell", M, False, 0.0))
        y = m(x)
    for s in seen["s"]:   # the premise: phi in its linear range
        assert 0 < s.min() and s.max() < 80
    assert torch.allclose(arrays, ref, rtol=1e-9, atol=1e-9)   # no array clipped either
    assert torch.allclose(y, ref, rtol=1e-9, atol=1e-9), (y - ref).abs().max()


def test_softmax_kind_is_plain_attention_at_init():
    M, T = 128, 100
    torch.manual_seed(0)
    m = GainCellGPT(n_layer=1, n_head=2, n_embd=16, window=M, attention="softmax").double()

    def plain(q, k, v):   # scalers at init: k - 0.45 and v - 0.45 are the projections
        return F.scaled_dot_product_attention(q, k - 0.45, v - 0.45, is_causal=True)

    x = torch.randint(0, 256, (T, 3))
    with torch.no_grad():
        assert torch.allclose(m(x), reference_logits(m, x, plain), atol=1e-10)
