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
from ...hardware.compiled import jit, numba

# surrogate kinds of the compiled e-prop kernel (see .surrogates for the formulas)
SURROGATES = {"fast_sigmoid": 0, "superspike": 1, "atan": 2, "triangle": 3}


if numba is not None:
    @jit(parallel=True)
    def _membrane(cur, wt, v, a, z, spikes, c, sub, alif, recurrent, replay, vs, thrs, sg, sgk):
        # batch rows are independent: one row per thread, each row's ops in the one-thread order
        n, B, H = cur.shape
        beta, thr0, rho, adapt, one = c[0], c[1], c[2], c[3], c[4]
        sg_s, cut = c[5], c[6]
        zero = one - one
        two = one + one
        keep_v = vs.shape[0] > 0
        keep_t = thrs.shape[0] > 0
        keep_s = sg.shape[0] > 0
        hpi = c[7]  # pi * scale / 2 (atan)
        for b in numba.prange(B):
            vb, zb = v[b], z[b]
            ab = a[b] if alif else vb
            rec = np.zeros(H, dtype=cur.dtype)
            thr = np.empty(H, dtype=cur.dtype)
            for i in range(H):
                thr[i] = thr0
            for k in range(n):
                cb = cur[k, b]
                sb = spikes[k, b]
                if recurrent:  # rec = sum of W_rec^T rows of the neurons that spiked
                    for i in range(H):
                        rec[i] = zero
                    for j in range(H):
                        zj = zb[j]
                        if zj == one:
                            wj = wt[j]
                            for i in range(H):
                                rec[i] += wj[i]
                        elif zj != zero:
                            wj = wt[j]
                            for i in range(H):
                                rec[i] += zj * wj[i]
                if alif:
                    for i in range(H):
                        ab[i] = rho * ab[i] + zb[i]
                        thr[i] = thr0 + adapt * ab[i]
                if recurrent:
                    if sub:
                        for i in range(H):
                            vb[i] = beta * vb[i] + (cb[i] + rec[i]) - thr[i] * zb[i]
                    else:
                        for i in range(H):
                            vb[i] = beta * vb[i] * (one - zb[i]) + (cb[i] + rec[i])
                else:
                    if sub:
                        for i in range(H):
                            vb[i] = beta * vb[i] + cb[i] - thr[i] * zb[i]
                    else:
                        for i in range(H):
                            vb[i] = beta * vb[i] * (one - zb[i]) + cb[i]
                if keep_v:
                    vs[k, b, :] = vb
                if keep_t:
                    thrs[k, b, :] = thr
                if keep_s:  # surrogate derivative d z / d v, zeroed beyond |x| > cut
                    gk = sg[k, b]
                    for i in range(H):
                        x = (vb[i] - thr[i]) / thr0
                        ax = abs(x)
                        if ax > cut:
                            g = zero
                        elif sgk == 0:
                            d = one + sg_s * ax
                            g = sg_s / (two * (d * d))
                        elif sgk == 1:
                            d = one + sg_s * ax
                            g = one / (d * d)
                        elif sgk == 2:
                            y = hpi * x
                            g = sg_s / (two * (one + y * y))
                        else:
                            g = sg_s * max(zero, one - ax)
                        gk[i] = g / thr0
                if not replay:
                    if thr0 > zero:
                        for i in range(H):
                            sb[i] = vb[i] > thr[i]
                    else:
                        for i in range(H):
                            sb[i] = (vb[i] - thr[i]) / thr0 > zero
                for i in range(H):
                    zb[i] = one if sb[i] else zero

    @jit(parallel=True)
    def _rec_grad(gT, zprev, g):
        # one row j of the accumulator per thread: each element summed in the one-thread order
        n, B, H = g.shape
        for j in numba.prange(zprev.shape[2]):
            row = gT[j]
            for k in range(n):
                for b in range(B):
                    if zprev[k, b, j]:
                        gk = g[k, b]
                        for i in range(H):
                            row[i] += gk[i]

    @jit(parallel=True)
    def _lif_back_sparse(gz, sg, w_back, cv, cz, P, gI, beta, thr0, recurrent):
        # reverse recursion of the LIF (subtract reset) layer over a block with the recurrent
        # product over the active neurons only (rows of W_back where gz * sg != 0):
        #   gv_t = gz_t sg_t + beta gv_{t+1},  cz_{t-1} = gv_t W_back
        #        = (gz_t sg_t) W_back + P_t,   P_{t-1} = beta cz_{t-1}
        n, B, H = gz.shape
        zero = beta - beta
        for b in numba.prange(B):
            cvb, czb, Pb = cv[b], cz[b], P[b]
            gzs = np.empty(H, dtype=gz.dtype)
            idx = np.empty(H, dtype=np.int64)
            for k in range(n - 1, -1, -1):
                gk, sk, gIk = gz[k, b], sg[k, b], gI[k, b]
                cnt = 0
                for i in range(H):
                    gzi = (gk[i] + czb[i]) * sk[i]
                    gvi = gzi + cvb[i]
                    gIk[i] = gvi
                    cvb[i] = beta * gvi
                    if gzi != zero:
                        gzs[cnt] = gzi
                        idx[cnt] = i
                        cnt += 1
                if recurrent:
                    for i in range(H):
                        czb[i] = Pb[i]
                    for q in range(cnt):
                        w = w_back[idx[q]]
                        g = gzs[q]
                        for i in range(H):
                            czb[i] += g * w[i]
                    for i in range(H):
                        Pb[i] = beta * czb[i]
                else:
                    for i in range(H):
                        czb[i] = -thr0 * gIk[i]


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
                   cut: float | None = None):
    """Run ``n`` steps of a LIF/ALIF layer from state ``(v, a, z)`` (``[B, H]`` each, updated
    in place; pass copies). ``cur [n, B, H]`` input current; ``w_rec_t [H, H]`` is
    ``W_rec^T`` contiguous (None: no recurrence); ``spikes [n, B, H]`` bool, written
    (forward) or read (``replay=True``). Returns ``(vs, thrs)``, the membrane and threshold
    after each step ``[n, B, H]`` when asked for (``keep_v``/``keep_thr``, or written into
    ``out_v``/``out_thr``), else None. ``out_sg [n, B, H]``: written with the surrogate
    derivative ``g((v - thr) / threshold) / threshold`` of ``surrogate`` (slope ``scale``),
    zero where ``|v - thr| / threshold > cut`` (sparse backward; None: never). Batch rows
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
    threads()
    _membrane(_np(cur.contiguous()), wt, _np(v), _np(a) if alif else np.empty((0, 0), dtype=npdt),
              _np(z), _np(spikes), c, reset == "subtract", alif, w_rec_t is not None, replay,
              _np(vs) if vs is not None else empty, _np(thrs) if thrs is not None else empty,
              _np(out_sg) if out_sg is not None else empty, SURROGATES[surrogate])
    return vs, thrs


def recurrent_grad(g_rec_t: torch.Tensor, zprev: torch.Tensor, g: torch.Tensor) -> None:
    """Accumulate ``g_rec_t [H, H] += sum_{t,b} zprev[t, b]^T g[t, b]`` in place (that is
    ``(g^T z_{t-1})^T``, the transposed recurrent weight gradient). ``zprev`` bool or 0/1
    ``[n, B, H]``, ``g [n, B, C]``, ``g_rec_t [H, C]`` (any ``C``: the readout uses it too).
    Rows of the accumulator run in parallel, each summed in the one-thread order."""
    zb = zprev if zprev.dtype == torch.bool else zprev != 0
    threads()
    _rec_grad(_np(g_rec_t), _np(zb.contiguous()), _np(g.contiguous()))


def lif_backward_sparse(gz: torch.Tensor, sg: torch.Tensor, w_back: torch.Tensor | None,
                        cv: torch.Tensor, cz: torch.Tensor, P: torch.Tensor, gI: torch.Tensor,
                        beta: float, threshold: float) -> None:
    """Reverse recursion of a LIF layer (subtract reset) over a block, ``[n, B, H]`` each:
    ``gz`` gradient reaching the spikes from outside, ``sg`` surrogate derivative (zero
    outside the active set), ``w_back [H, H] = W_rec - threshold I`` (None: no recurrence).
    Carries ``cv`` (``beta dL/dv``), ``cz`` (``dL/dz`` of the step before) and ``P``
    (``cv W_back``), ``[B, H]`` each, in place; writes ``gI = dL/dI``. The recurrent
    product visits only the neurons whose ``gz * sg`` is nonzero."""
    dt = gz.dtype
    npdt = np.float32 if dt == torch.float32 else np.float64
    wb = _np(w_back.contiguous()) if w_back is not None else np.empty((0, 0), dtype=npdt)
    threads()
    _lif_back_sparse(_np(gz.contiguous()), _np(sg), wb, _np(cv), _np(cz), _np(P), _np(gI),
                     npdt(beta), npdt(threshold), w_back is not None)
