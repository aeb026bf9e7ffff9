"""Interchangeable sliding-window attention: ``softmax``, ``linear_gaincell``, ``gaincell``.

Queries are processed in blocks of ``array`` (64) token positions aligned to absolute
multiples of 64, so the keys one block can see always form the same *band*: positions
``[a - M, a + 64)`` for the block starting at position ``a`` (``M`` = window). Query row
``r`` (position ``a + r``) sees band column ``c`` (position ``a - M + c``) iff
``r < c <= r + M`` and the key's position is not negative; band column groups of 64 are the
gain-cell arrays of eq. 3 (each array's output is read by its own ADC, then the arrays are
summed digitally), exactly the 64-token tiles of absolute positions.

Every kind reads keys and values relative to the cells' zero, ``K - 0.45`` and ``V - 0.45``
(eq. 1, 3 of :mod:`.hardware`); the K and V scalers start at ``a = 1, b = 0.45``, so at
initialisation ``softmax`` is exactly ordinary scaled dot-product attention of the
projections, and all three kinds share weights, scalers and state layout
(:meth:`spiketrain.models.gaincell.GainCellGPT.set_attention` switches in place).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import hardware as hw
from .quant import KV_CELL, OUT_ADC, Q_DAC, Quantizer

KINDS = ("softmax", "linear_gaincell", "gaincell")
SCALERS = ("q", "k", "v", "out")


class Scaler(nn.Module):
    """Per-head learnable affine ``y = a * x + b`` on ``x [B, H, n, d]`` (``a, b [H]``).

    With statistics on (:meth:`track`), every forward adds the per-head sum and sum of
    squares of ``y`` over batch, valid token rows and features (float64, outside autograd);
    :meth:`commit` turns them into the batch's mean and std (unbiased) and blends them into
    ``mean``/``std`` (``[H]``, None until tracked): the first commit after :meth:`track`
    sets them, later ones move them by ``momentum`` (EMA 0.1 by default). Statistics never
    feed back into outputs, so ``step`` stays a pure function of (parameters, state, x_t).
    """

    def __init__(self, n_head: int, name: str, layer: int, b: float = 0.0):
        super().__init__()
        self.name, self.layer = name, layer
        self.a = nn.Parameter(torch.ones(n_head))
        self.b = nn.Parameter(torch.full((n_head,), float(b)))
        self.register_buffer("mean", None, persistent=False)
        self.register_buffer("std", None, persistent=False)
        self.tracking, self.momentum = False, 0.1
        self._acc: list[Tensor] | None = None

    def forward(self, x: Tensor, rows: slice = slice(None)) -> Tensor:
        a, b = self.a.view(1, -1, 1, 1), self.b.view(1, -1, 1, 1)
        if torch.is_grad_enabled() and (x.requires_grad or self.a.requires_grad
                                        or self.b.requires_grad):
            y = x * a + b
        else:
            y = (x * a).add_(b)      # same values, one tensor less
        if self.tracking:
            with torch.no_grad():
                yv = y.detach()[:, :, rows].to(torch.float64)
                part = [yv.sum((0, 2, 3)), (yv * yv).sum((0, 2, 3)),
                        torch.tensor(float(yv[:, 0].numel()), dtype=torch.float64)]
                self._acc = part if self._acc is None else [u + w for u, w in
                                                            zip(self._acc, part)]
        return y

    def track(self, enabled: bool, momentum: float = 0.1) -> None:
        """Turn statistics on (starting a fresh record) or off."""
        self.tracking, self.momentum, self._acc = bool(enabled), float(momentum), None
        if enabled:
            self.mean = self.std = None

    def commit(self) -> None:
        """Blend the statistics accumulated since the last commit into ``mean``/``std``."""
        if self._acc is None:
            return
        s, ss, n = self._acc
        self._acc = None
        n = n.to(s.device)
        mean = s / n
        var = ((ss - s * s / n) / (n - 1).clamp(min=1)).clamp(min=0)
        mean, std = mean.to(self.a.dtype), var.sqrt().to(self.a.dtype)
        if self.mean is None:
            self.mean, self.std = mean, std
        else:
            m = self.momentum
            self.mean = (1 - m) * self.mean + m * mean
            self.std = (1 - m) * self.std + m * std

    def extra_repr(self) -> str:
        return f"name={self.name!r}, layer={self.layer}, heads={self.a.numel()}"


def softmax_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor, decay=None, **_) -> Tensor:
    """Reference: ``softmax((K-0.45) q / sqrt(d)) (V-0.45)`` over the unmasked keys, by
    ``torch.nn.functional.scaled_dot_product_attention``. ``q [B, H, n, d]``,
    ``k, v [B, H, N, d]``, ``mask [n, N]`` (True = visible) -> ``[B, H, n, d]``."""
    return F.scaled_dot_product_attention(q, k - hw.OFFSET, v - hw.OFFSET, attn_mask=mask)


def gaincell_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor, decay: Tensor,
                       nonlinear: bool = False, adc: Quantizer = OUT_ADC,
                       array: int = hw.ARRAY,
                       factors: tuple[Tensor, Tensor] | None = None) -> Tensor:
    """Gain-cell attention (eq. 1-4 of :mod:`.hardware`), no softmax, no 1/sqrt(d):
    ``phi(S)`` from the first product, then per array of ``array`` key columns the second
    product, clamped and quantised by ``adc``, summed over arrays. Shapes as
    :func:`softmax_attention`; ``decay [n, N]`` holds ``D``; ``N`` is a multiple of ``array``;
    ``factors``: the linear model's :func:`hw.linear_factors` of ``decay, mask`` if kept by
    the caller."""
    if not nonlinear:
        sums = hw.linear_array_sums(q, k, v, factors or hw.linear_factors(decay, mask), array)
    else:
        sums = hw.array_sums(hw.phi(hw.scores(q, k, decay, mask, True)), v, decay, True, array)
    return adc(sums).sum(-3)


class WindowAttention(nn.Module):
    """Causal self-attention over a sliding window of ``window`` tokens, one 64-position
    block at a time (see the module docstring), with per-head scalers on Q, K, V and the
    output, and the hardware's quantisers (gain-cell kinds; ``quantize=False`` keeps only
    the clamps to the hardware ranges).
    """

    def __init__(self, n_embd: int, n_head: int, window: int, layer: int,
                 kind: str = "linear_gaincell", quantize: bool = True, decay: float = hw.DECAY,
                 array: int = hw.ARRAY, bias: bool = True):
        super().__init__()
        if n_embd % n_head:
            raise ValueError(f"n_embd={n_embd} is not a multiple of n_head={n_head}")
        if window <= 0 or window % array:
            raise ValueError(f"window={window} must be a positive multiple of the array size "
                             f"{array} (the 64-row gain-cell arrays)")
        self.n_embd, self.n_head, self.window, self.array = n_embd, n_head, window, array
        self.head_dim = n_embd // n_head
        self.set_kind(kind)
        self.quantize, self.lam = bool(quantize), float(decay)
        self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=bias)
        self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.q = Scaler(n_head, "q", layer, 0.0)
        self.k = Scaler(n_head, "k", layer, hw.OFFSET)
        self.v = Scaler(n_head, "v", layer, hw.OFFSET)
        self.out = Scaler(n_head, "out", layer, 0.0)
        r = torch.arange(array).view(-1, 1)
        dist = r + window - torch.arange(window + array).view(1, -1)   # query pos - key pos
        self.register_buffer("band_mask", (dist >= 0) & (dist < window), persistent=False)
        self.register_buffer("band_dist", dist.clamp(min=0), persistent=False)
        self._decay_cache: dict = {}
        self._factor_cache: dict = {}

    def band_decay(self, dtype: torch.dtype) -> Tensor:
        """``D [64, M + 64]`` of the band (computed in float64, cached per dtype/device)."""
        key = (dtype, self.band_dist.device, self.lam)
        if key not in self._decay_cache:
            self._decay_cache = {key: hw.decay_matrix(self.band_dist, self.lam, dtype)}
        return self._decay_cache[key]

    def linear_factors(self, decay: Tensor, mask: Tensor, r0: int,
                       a: int) -> tuple[Tensor, Tensor]:
        """:func:`hw.linear_factors` of this block's ``decay``/``mask`` rows: the masked first
        kept per row range and start (one tensor for every full block past the first
        window), the second as rows of one band-wide tensor, so autograd saves each once,
        not per block."""
        key = (decay.dtype, decay.device, self.lam, r0, mask.shape[0], max(0, self.window - a))
        f = self._factor_cache.get(key)
        if f is None:
            if len(self._factor_cache) >= 512:
                self._factor_cache.clear()
            band = ("band", decay.dtype, decay.device, self.lam)
            full = self._factor_cache.get(band)
            if full is None:
                full = self._factor_cache[band] = hw.linear_factors(
                    self.band_decay(decay.dtype), self.band_mask)[1]
            f1 = hw.linear_factors(decay, mask)[0]
            f = self._factor_cache[key] = (f1, full[r0:r0 + mask.shape[0]])
        return f

    def set_kind(self, kind: str) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown attention {kind!r}; choose one of {KINDS}")
        self.kind = kind

    def _quantizers(self) -> tuple[Quantizer, Quantizer, Quantizer]:
        qs = (Q_DAC, KV_CELL, OUT_ADC)
        return qs if self.quantize else tuple(x.off() for x in qs)

    def cells(self, h: Tensor, rows: slice) -> tuple[Tensor, Tensor, Tensor]:
        """``h [B, n, C]`` -> scaled (and, for gain cells, clamped and quantised) queries,
        keys, values ``[B, H, n, d]``; ``rows``: the valid rows (for statistics)."""
        B, n, _ = h.shape
        q, k, v = (t.view(B, n, self.n_head, self.head_dim).transpose(1, 2)
                   for t in self.c_attn(h).split(self.n_embd, dim=-1))
        q, k, v = self.q(q, rows), self.k(k, rows), self.v(v, rows)
        if self.kind != "softmax":
            qdac, cell, _ = self._quantizers()
            q, k, v = qdac(q), cell(k), cell(v)
        return q, k, v

    def _band(self, win: Tensor, new: Tensor, s: int, r0: int) -> Tensor:
        """Keys/values of band positions ``[a - M, a + 64)``: zeros before the window
        ``win`` (positions ``[a + s - M, a + s)``), then the block's own rows from ``s``."""
        B, H, n, d = new.shape
        parts = [win, new[:, :, s - r0:]]
        if s:
            parts.insert(0, win.new_zeros(B, H, s, d))
        tail = self.array - (r0 + n)
        if tail:
            parts.append(win.new_zeros(B, H, tail, d))
        return torch.cat(parts, 2)

    def forward(self, h: Tensor, kwin: Tensor, vwin: Tensor, a: int, r0: int, s: int,
                e: int) -> tuple[Tensor, Tensor, Tensor]:
        """One block: rows ``r0 .. r0 + n`` of the block at position ``a`` (``h [B, n, C]``),
        of which ``s .. e`` are real tokens; ``kwin, vwin [B, H, M, d]`` hold the window
        before position ``a + s``. Returns ``y [B, n, C]`` and the window before ``a + e``."""
        n = h.shape[1]
        rows = slice(s - r0, e - r0)
        q, k, v = self.cells(h, rows)
        kb, vb = self._band(kwin, k, s, r0), self._band(vwin, v, s, r0)
        mask = self.band_mask[r0:r0 + n]
        if a < self.window:   # keys before position 0 do not exist
            mask = mask & (torch.arange(mask.shape[1], device=mask.device) >= self.window - a)
        decay = self.band_decay(q.dtype)[r0:r0 + n]
        if self.kind == "softmax":
            y = softmax_attention(q, kb, vb, mask)
        else:
            nonlinear = self.kind == "gaincell"
            factors = None if nonlinear else self.linear_factors(decay, mask, r0, a)
            y = gaincell_attention(q, kb, vb, mask, decay, nonlinear=nonlinear,
                                   adc=self._quantizers()[2], array=self.array, factors=factors)
        y = self.out(y, rows)
        y = y.transpose(1, 2).reshape(h.shape[0], n, self.n_embd)
        M = self.window
        return self.c_proj(y), kb[:, :, e:e + M], vb[:, :, e:e + M]
