"""Leaky readout ``o_t = kappa o_{t-1} + u_t + b`` (``u_t = z_t W^T``) and its reduction over time.

- :func:`leaky_update`: the one step, used by ``RSNN.step`` and every eager loop;
- :func:`leaky_scan` / :func:`leaky_scan_grad`: the recursion over a chunk (compiled on CPU,
  else a loop over :func:`leaky_update`), used by the fused readout and by e-prop;
- :func:`spike_current` / :func:`readout_grads`: the readout's forward current from binary
  spikes and its backward, run by the last fused layer inside its own autograd node
  (:mod:`.fused`: no float copy of the spikes and no ``[T, B, H]`` gradient in between);
- :class:`TimeReduce` / :func:`reduce_outputs`: ``outputs [T, B, C] -> logits [B, C]`` by
  max / sum / mean / last, also chunk by chunk (online strategies).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ...hardware.bits import SpikeStore
from ...hardware.compiled import as_numpy as _np
from ...hardware.compiled import available, byte_words, chunk_range, jit, lowest_set_byte, numba

READOUTS = ("max", "sum", "mean", "last")


def leaky_update(o: Tensor, u: Tensor, b: Tensor | None, kappa: float) -> Tensor:
    """``kappa o + u + b`` (in that order): one readout step, ``[B, C]``."""
    o = kappa * o + u
    return o if b is None else o + b


@jit
def _scan(u, b, o0, kappa, out, has_b):
    T, B, C = u.shape
    k = kappa[0]
    for t in range(T):
        for bb in range(B):
            prev = o0[bb] if t == 0 else out[t - 1, bb]
            ut = u[t, bb]
            ot = out[t, bb]
            if has_b:
                for c in range(C):
                    ot[c] = (k * prev[c] + ut[c]) + b[c]
            else:
                for c in range(C):
                    ot[c] = k * prev[c] + ut[c]


@jit
def _scan_grad(go, kappa, gu):
    T, B, C = go.shape
    k = kappa[0]
    gu[T - 1] = go[T - 1]
    for t in range(T - 2, -1, -1):
        for bb in range(B):
            for c in range(C):
                gu[t, bb, c] = go[t, bb, c] + k * gu[t + 1, bb, c]


if numba is not None:
    @jit
    def _current_rows(z, zw, wt, u, r0, r1):
        # u[r] += rows j of wt (ascending) where z[r, j]. zw: z's rows as 8-byte words
        # (hardware.compiled.byte_words), or empty: then the bytes are scanned one by one
        H, C = z.shape[1], wt.shape[1]
        Q = zw.shape[1]
        for r in range(r0, r1):
            if Q > 0:
                wr = zw[r]
                for q in range(Q):
                    x = wr[q]
                    while x != 0:
                        k, x = lowest_set_byte(x)
                        j = 8 * q + k
                        for c in range(C):
                            u[r, c] += wt[j, c]
            for j in range(8 * Q, H):
                if z[r, j]:
                    for c in range(C):
                        u[r, c] += wt[j, c]

    @jit(parallel=True)
    def _current(z, zw, wt, u, nchunk):
        # rows split in nchunk ranges, one per thread
        R = z.shape[0]
        for ch in numba.prange(nchunk):
            r0, r1 = chunk_range(ch, R, nchunk)
            if r1 > r0:
                _current_rows(z, zw, wt, u, r0, r1)


def spike_current(spikes: Tensor, w: Tensor) -> Tensor:
    """``u = z W^T`` of bool spikes ``[T, B, H]`` and ``w [C, H]`` (no autograd): ``[T, B, C]``.
    Compiled: each row sums the columns of ``w`` of its spiking neurons in ascending order
    (rows in parallel, bit-identical for any thread count); else one matmul."""
    T, B, H = spikes.shape
    if not (available(w) and spikes.dtype == torch.bool):
        return spikes.to(w.dtype) @ w.detach().t()
    from .lif_numba import threads
    u = torch.zeros(T, B, w.shape[0], dtype=w.dtype)
    z = _np(spikes.reshape(T * B, H).contiguous()).view(np.uint8)
    zw = byte_words(z)
    args = (z, zw, _np(w.detach().t().contiguous()), _np(u).reshape(T * B, -1))
    nt = min(threads(), max(T * B, 1))
    if nt > 1:
        _current(*args, nt)
    else:
        _current_rows(*args, 0, T * B)
    return u


def readout_grads(go: Tensor, store: SpikeStore, w: Tensor, kappa: float, need_w: bool,
                  need_b: bool):
    """Backward of ``o_t = kappa o_{t-1} + z_t W^T + b`` over a chunk, ``go [T, B, C]``:
    ``(gu, g_w, g_b, g_o0)`` with ``gu = dL/du [T, B, C]`` (``dL/dz = gu W``, left to the
    caller), ``g_w`` from the spikes in ``store`` (None unless ``need_w``), ``g_b``."""
    gu = leaky_scan_grad(go, kappa)
    gw = gb = None
    if need_w and store.storage == "bool" and available(go):
        # scatter the rows of gu into the neurons that spiked (no float copy of z)
        from .lif_numba import recurrent_grad
        gw_t = w.new_zeros(w.shape[1], w.shape[0])
        recurrent_grad(gw_t, store.tensor, gu)
        gw = gw_t.t()
    elif need_w:
        gw = w.new_zeros(w.shape)
        T, K = go.shape[0], 256
        for t0 in range(0, T, K):  # a block at a time: no full-length float copy of z
            z = store.load_range(t0, min(t0 + K, T), go.dtype)
            gw += gu[t0:t0 + K].reshape(-1, gu.shape[-1]).t() @ z.reshape(-1, z.shape[-1])
    if need_b:
        gb = gu.sum((0, 1))
    return gu, gw, gb, kappa * gu[0]


def leaky_scan(u: Tensor, o0: Tensor, kappa: float, b: Tensor | None = None) -> Tensor:
    """``o_t = leaky_update(o_{t-1}, u_t, b, kappa)`` over ``u [T, B, C]`` from ``o0 [B, C]``
    (no autograd): ``[T, B, C]``."""
    if available(u, o0, b) and u.numel():
        out = torch.empty(u.shape, dtype=u.dtype)
        k = np.array([kappa], dtype=_np(u).dtype)
        bn = _np(b.detach().contiguous()) if b is not None else np.empty(0, dtype=k.dtype)
        _scan(_np(u.detach().contiguous()), bn, _np(o0.detach().contiguous()), k, _np(out),
              b is not None)
        return out
    out = torch.empty(u.shape, dtype=u.dtype, device=u.device)
    o = o0.detach()
    with torch.no_grad():
        for t, u_t in enumerate(u.detach().unbind(0)):
            o = out[t] = leaky_update(o, u_t, None if b is None else b.detach(), kappa)
    return out


def leaky_scan_grad(go: Tensor, kappa: float) -> Tensor:
    """Reverse of :func:`leaky_scan` w.r.t. ``u``: ``gu_t = go_t + kappa gu_{t+1}``."""
    if available(go) and go.numel():
        gu = torch.empty_like(go)
        _scan_grad(_np(go.contiguous()), np.array([kappa], dtype=_np(go).dtype), _np(gu))
        return gu
    gu = torch.empty_like(go)
    c = None
    for t in range(go.shape[0] - 1, -1, -1):
        gu[t] = go[t] if c is None else go[t] + c
        c = kappa * gu[t]
    return gu


class TimeReduce:
    """Reduction of readout outputs over time, chunk by chunk: :meth:`update` with
    ``[K, B, C]`` chunks in time order, :meth:`value` ``[B, C]`` (max, sum, mean or last)."""

    def __init__(self, how: str = "max"):
        if how not in READOUTS:
            raise ValueError(f"unknown readout {how!r}; choose one of {READOUTS}")
        self.how, self.acc, self.steps = how, None, 0

    def update(self, outputs: Tensor) -> None:
        how, acc = self.how, self.acc
        self.steps += outputs.shape[0]
        if how == "max":
            cur = outputs.max(0).values
            self.acc = cur if acc is None else torch.maximum(acc, cur)
        elif how in ("sum", "mean"):
            cur = outputs.sum(0)
            self.acc = cur if acc is None else acc + cur
        else:
            self.acc = outputs[-1]

    def value(self) -> Tensor | None:
        if self.acc is None or self.how != "mean":
            return self.acc
        return self.acc / self.steps


def reduce_outputs(outputs: Tensor, how: str = "max") -> Tensor:
    """``outputs [T, B, C] -> logits [B, C]`` by ``how`` in max / sum / mean / last."""
    red = TimeReduce(how)
    red.update(outputs)
    return red.value()
