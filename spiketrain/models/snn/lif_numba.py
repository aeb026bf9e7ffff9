"""Compiled CPU loops of the LIF/ALIF layers (numba), one module for every compiled LIF update.

The per-step work of a spiking layer is tiny (a few element-wise ops on ``[B, H]`` and a
recurrent product with a sparse, binary ``z``), so in eager PyTorch it is dominated by
dispatch overhead and by a dense ``[B, H] @ [H, H]`` matmul that mostly multiplies zeros.
These kernels run a whole block of steps in one compiled call:

- :func:`membrane_block` (fused chunk, :mod:`.fused`): the membrane recursion over ``n``
  steps, with the recurrent current gathered from the rows of ``W_rec^T`` of the neurons
  that spiked (exact: a binary ``z`` only selects rows), either computing the spikes
  (forward) or reading stored ones (replay in backward, which then gives the very same
  membranes);
- :func:`recurrent_grad`: ``G_rec^T += sum_t z_{t-1}^T g_t`` by scattering each ``g`` row
  into the rows of the neurons that spiked (``[n, B, H]`` in, ``[H, H]`` accumulated);
- :func:`.lif_sparse_numba.lif_backward_sparse`: the reverse recursion of the sparse
  backward, its recurrent product over the active neurons only;
- :func:`.eprop_lif_numba.lif_chunk` (e-prop, :mod:`.eprop_kernel`): the same update over a chunk with the
  reduced per-neuron Jacobians of the e-prop traces.

Element-wise ops follow :func:`spiketrain.models.snn.neurons.lif_membrane` in the same
order and precision (float32 stays float32), so results agree with the eager loop to
rounding of the recurrent sum's order. Used for CPU tensors of float32/float64 when
:func:`spiketrain.hardware.compiled.available`; otherwise the eager path runs.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ...hardware.compiled import as_numpy as _np
from ...hardware.compiled import add_rows, byte_words, chunk_range, jit, lowest_set_byte, numba

# surrogate kinds of the compiled e-prop kernel (see .surrogates for the formulas)
SURROGATES = {"fast_sigmoid": 0, "superspike": 1, "atan": 2, "triangle": 3}


if numba is not None:
    # error_model="numpy": IEEE division (no Python zero-divisor check, which kept the
    # surrogate loops from vectorising); the divisors here are never zero
    @jit(error_model="numpy")
    def _membrane_rows(cur, wt, v, a, z, spikes, c, sub, alif, recurrent, replay, vs, thrs, sg,
                       sgk, zs, b0, b1):
        # batch rows b0:b1, all steps; element-wise ops over the rows' contiguous [M] slice
        # (one long vectorised loop), so one call over every row is the one-thread kernel
        n, B, H = cur.shape
        M = (b1 - b0) * H
        beta, thr0, rho, adapt, one = c[0], c[1], c[2], c[3], c[4]
        sg_s, cut, hpi = c[5], c[6], c[7]  # hpi = pi * scale / 2 (atan)
        zero = one - one
        two = one + one
        keep_v = vs.shape[0] > 0
        keep_t = thrs.shape[0] > 0
        keep_s = sg.shape[0] > 0
        keep_z = zs.shape[0] > 0
        v1, z1 = v[b0:b1].reshape(M), z[b0:b1].reshape(M)
        a1 = a[b0:b1].reshape(M) if alif else v1
        Bc = b1 - b0
        rec = np.zeros((Bc, H), dtype=cur.dtype)
        rec1 = rec.reshape(M)
        zc = z[b0:b1]
        jl = np.empty(H, dtype=np.int64)  # a row's spiking neurons (ascending) and their z
        vl = np.empty(H, dtype=cur.dtype)
        thr = np.full(M, thr0, dtype=cur.dtype)
        for k in range(n):
            c1 = cur[k, b0:b1].reshape(M)
            s1 = spikes[k, b0:b1].reshape(M)
            if recurrent:  # rec[r] = sum of W_rec^T rows of the neurons that spiked, j ascending
                for r in range(Bc):
                    zr, rr = zc[r], rec[r]
                    for i in range(H):
                        rr[i] = zero
                    m = 0
                    for j in range(H):
                        if zr[j] != zero:
                            jl[m] = j
                            vl[m] = zr[j]
                            m += 1
                    add_rows(rr, wt, jl, vl, m)
            if alif:
                for i in range(M):
                    a1[i] = rho * a1[i] + z1[i]
                    thr[i] = thr0 + adapt * a1[i]
            if recurrent:
                if sub:
                    for i in range(M):
                        v1[i] = beta * v1[i] + (c1[i] + rec1[i]) - thr[i] * z1[i]
                else:
                    for i in range(M):
                        v1[i] = beta * v1[i] * (one - z1[i]) + (c1[i] + rec1[i])
            else:
                if sub:
                    for i in range(M):
                        v1[i] = beta * v1[i] + c1[i] - thr[i] * z1[i]
                else:
                    for i in range(M):
                        v1[i] = beta * v1[i] * (one - z1[i]) + c1[i]
            if keep_v:
                vs[k, b0:b1].reshape(M)[:] = v1
            if keep_t:
                thrs[k, b0:b1].reshape(M)[:] = thr
            if keep_s:  # surrogate derivative d z / d v, zeroed beyond |x| > cut
                g1 = sg[k, b0:b1].reshape(M)
                # one branch-free loop per surrogate kind, so each vectorises
                if sgk == 0:
                    for i in range(M):
                        x = (v1[i] - thr[i]) / thr0
                        ax = abs(x)
                        d = one + sg_s * ax
                        g = sg_s / (two * (d * d))
                        g1[i] = (g if ax <= cut else zero) / thr0
                elif sgk == 1:
                    for i in range(M):
                        x = (v1[i] - thr[i]) / thr0
                        ax = abs(x)
                        d = one + sg_s * ax
                        g = one / (d * d)
                        g1[i] = (g if ax <= cut else zero) / thr0
                elif sgk == 2:
                    for i in range(M):
                        x = (v1[i] - thr[i]) / thr0
                        ax = abs(x)
                        y = hpi * x
                        g = sg_s / (two * (one + y * y))
                        g1[i] = (g if ax <= cut else zero) / thr0
                else:
                    for i in range(M):
                        x = (v1[i] - thr[i]) / thr0
                        ax = abs(x)
                        g = sg_s * max(zero, one - ax)
                        g1[i] = (g if ax <= cut else zero) / thr0
            if not replay:
                if thr0 > zero:
                    for i in range(M):
                        s1[i] = v1[i] > thr[i]
                else:
                    for i in range(M):
                        s1[i] = (v1[i] - thr[i]) / thr0 > zero
            for i in range(M):
                z1[i] = one if s1[i] else zero
            if keep_z:  # the spikes as floats (what the layer returns)
                zs[k, b0:b1].reshape(M)[:] = z1

    @jit(parallel=True, error_model="numpy")
    def _membrane(cur, wt, v, a, z, spikes, c, sub, alif, recurrent, replay, vs, thrs, sg, sgk,
                  zs, nchunk):
        # batch rows are independent: nchunk ranges of rows, one per thread
        B = cur.shape[1]
        for ch in numba.prange(nchunk):
            b0, b1 = chunk_range(ch, B, nchunk)
            if b1 > b0:
                _membrane_rows(cur, wt, v, a, z, spikes, c, sub, alif, recurrent, replay, vs,
                               thrs, sg, sgk, zs, b0, b1)

    @jit
    def _rec_grad_rows(gT, zprev, zw, g, j0, j1):
        # rows j0:j1 of the accumulator, each element summed in (step, batch row) order.
        # zw: zprev's rows as 8-byte words (hardware.compiled.byte_words; j0, j1 multiples
        # of 8), or empty: then the bytes are scanned one by one
        n, B, H = g.shape
        for k in range(n):
            for b in range(B):
                if zw.shape[2] > 0:
                    zr = zw[k, b]
                    for q in range(j0 // 8, j1 // 8):
                        x = zr[q]
                        while x != 0:
                            kb, x = lowest_set_byte(x)
                            j = 8 * q + kb
                            for i in range(H):
                                gT[j, i] += g[k, b, i]
                else:
                    for j in range(j0, j1):
                        if zprev[k, b, j]:
                            for i in range(H):
                                gT[j, i] += g[k, b, i]

    @jit(parallel=True)
    def _rec_grad(gT, zprev, zw, g, nchunk):
        # nchunk ranges of accumulator rows (of whole 8-byte words if zw is given), one per thread
        J = zprev.shape[2]
        W = 8 if zw.shape[2] > 0 else 1
        for ch in numba.prange(nchunk):
            j0, j1 = chunk_range(ch, J // W, nchunk)
            if j1 > j0:
                _rec_grad_rows(gT, zprev, zw, g, W * j0, W * j1)

def threads() -> int:
    """Threads of the compiled kernels: ``torch.get_num_threads()`` (capped by numba's pool)."""
    n = max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
    if numba.get_num_threads() != n:
        numba.set_num_threads(n)
    return n


def membrane_block(cur: torch.Tensor, w_rec_t: torch.Tensor | None, v: torch.Tensor,
                   a: torch.Tensor | None, z: torch.Tensor, spikes: torch.Tensor, *,
                   beta: float, threshold: float, reset: str, rho: float = 0.0,
                   adapt: float = 0.0, replay: bool = False, keep_v: bool = False,
                   keep_thr: bool = False, out_v: torch.Tensor | None = None,
                   out_thr: torch.Tensor | None = None, out_sg: torch.Tensor | None = None,
                   surrogate: str = "fast_sigmoid", scale: float = 25.0,
                   cut: float | None = None, out_z: torch.Tensor | None = None):
    """Run ``n`` steps of a LIF/ALIF layer from state ``(v, a, z)`` (``[B, H]`` each, updated
    in place; pass copies). ``cur [n, B, H]`` input current; ``w_rec_t [H, H]`` is
    ``W_rec^T`` contiguous (None: no recurrence); ``spikes [n, B, H]`` bool, written
    (forward) or read (``replay=True``). Returns ``(vs, thrs)``, the membrane and threshold
    after each step ``[n, B, H]`` when asked for (``keep_v``/``keep_thr``, or written into
    ``out_v``/``out_thr``), else None. ``out_sg [n, B, H]``: written with the surrogate
    derivative ``g((v - thr) / threshold) / threshold`` of ``surrogate`` (slope ``scale``),
    zero where ``|v - thr| / threshold > cut`` (sparse backward; None: never). ``out_z
    [n, B, H]`` (float, optional): written with the spikes as 0/1 floats. Batch rows
    run in parallel on :func:`threads` threads, each with the one-thread arithmetic."""
    n, B, H = cur.shape
    dt = cur.dtype
    npdt = np.float32 if dt == torch.float32 else np.float64
    c = np.array([beta, threshold, rho, adapt, 1.0, scale, math.inf if cut is None else cut,
                  math.pi * scale / 2.0], dtype=npdt)
    empty = np.empty((0, 0, 0), dtype=npdt)
    vs = out_v if out_v is not None else (torch.empty(n, B, H, dtype=dt) if keep_v else None)
    thrs = out_thr if out_thr is not None else (torch.empty(n, B, H, dtype=dt) if keep_thr else None)
    alif = a is not None
    wt = _np(w_rec_t) if w_rec_t is not None else np.empty((0, 0), dtype=npdt)
    args = (_np(cur.contiguous()), wt, _np(v), _np(a) if alif else np.empty((0, 0), dtype=npdt),
            _np(z), _np(spikes), c, reset == "subtract", alif, w_rec_t is not None, replay,
            _np(vs) if vs is not None else empty, _np(thrs) if thrs is not None else empty,
            _np(out_sg) if out_sg is not None else empty, SURROGATES[surrogate],
            _np(out_z) if out_z is not None else empty)
    nt = min(threads(), B)
    if nt > 1:
        _membrane(*args, nt)
    else:  # one thread: the serial kernel (no parallel-region overhead), same arithmetic
        _membrane_rows(*args, 0, B)
    return vs, thrs


def recurrent_grad(g_rec_t: torch.Tensor, zprev: torch.Tensor, g: torch.Tensor) -> None:
    """Accumulate ``g_rec_t [H, H] += sum_{t,b} zprev[t, b]^T g[t, b]`` in place (that is
    ``(g^T z_{t-1})^T``, the transposed recurrent weight gradient). ``zprev`` bool or 0/1
    ``[n, B, H]``, ``g [n, B, C]``, ``g_rec_t [H, C]`` (any ``C``: the readout uses it too).
    Rows of the accumulator run in parallel, each summed in the one-thread order."""
    zb = zprev if zprev.dtype == torch.bool else zprev != 0
    zn = _np(zb.contiguous())
    J = zn.shape[2]
    zw = byte_words(zn)
    words = zw.size > 0
    args = (_np(g_rec_t), zn, zw, _np(g.contiguous()))
    nt = min(threads(), J // 8 if words else J)
    if nt > 1:
        _rec_grad(*args, nt)
    else:
        _rec_grad_rows(*args, 0, g_rec_t.shape[0])
