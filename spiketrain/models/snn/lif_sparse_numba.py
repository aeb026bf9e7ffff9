"""Compiled reverse recursion of the sparse backward of a LIF (subtract reset) layer (numba).

With the surrogate derivative zeroed outside the active set (``RSNN(sparse_backward=c)``),
the backward's per-step ``[B, H] @ [H, H]`` product needs the rows of ``W_back`` of the
active neurons only; :func:`lif_backward_sparse` runs a block of steps of that recursion in
one call, batch rows (in pairs) in parallel, bit-identical for any thread count.
"""
from __future__ import annotations

import numpy as np
import torch

from ...hardware.compiled import as_numpy as _np
from ...hardware.compiled import add_rows, chunk_range, jit, numba
from .lif_numba import threads

if numba is not None:
    @jit(fastmath={"contract"})
    def _add_rows2(c1, c2, w, jl, v1, v2, m):
        # c1 += sum_e v1[e] w[jl[e]] and c2 += sum_e v2[e] w[jl[e]] (e = 0 .. m-1, in order):
        # two output rows that share their active neurons read each row of w once
        H = c1.shape[0]
        m4 = m - m % 4
        for e in range(0, m4, 4):
            a0, a1, a2, a3 = v1[e], v1[e + 1], v1[e + 2], v1[e + 3]
            b0, b1, b2, b3 = v2[e], v2[e + 1], v2[e + 2], v2[e + 3]
            w0, w1, w2, w3 = w[jl[e]], w[jl[e + 1]], w[jl[e + 2]], w[jl[e + 3]]
            for i in range(H):
                x0, x1, x2, x3 = w0[i], w1[i], w2[i], w3[i]
                c1[i] = (((c1[i] + a0 * x0) + a1 * x1) + a2 * x2) + a3 * x3
                c2[i] = (((c2[i] + b0 * x0) + b1 * x1) + b2 * x2) + b3 * x3
        for e in range(m4, m):
            a0, b0 = v1[e], v2[e]
            w0 = w[jl[e]]
            for i in range(H):
                c1[i] += a0 * w0[i]
                c2[i] += b0 * w0[i]

    @jit(error_model="numpy")
    def _lif_back_rows(gz, sg, w_back, cv, cz, P, gI, beta, thr0, recurrent, b0, b1):
        # reverse recursion of the LIF (subtract reset) layer over a block, batch rows b0:b1
        # (b0 even), with the recurrent product over the active neurons only (rows of W_back
        # where gz * sg != 0):
        #   gv_t = gz_t sg_t + beta gv_{t+1},  cz_{t-1} = gv_t W_back
        #        = (gz_t sg_t) W_back + P_t,   P_{t-1} = beta cz_{t-1}
        # P is carried between calls; inside a call P_t = beta cz_t is recomputed in place.
        # Rows go in pairs (2p, 2p + 1): the neurons active in both rows first (each of their
        # rows of W_back read once for the two, :func:`_add_rows2`), then each row's own
        # (``hardware.compiled.add_rows``), ascending, products fused into FMAs. The pairs are
        # fixed by the row index, so any split of pairs over threads gives the same bits.
        # (A neuron-major product, each active row of W_back read once for all the rows, was
        # measured slower: it reads and writes every output row once per active neuron.)
        n, B, H = gz.shape
        zero = beta - beta
        jb = np.empty(H + 1, dtype=np.int64)  # shared neurons and the two rows' values
        va = np.empty(H + 1, dtype=gz.dtype)
        vb = np.empty(H + 1, dtype=gz.dtype)
        ja = np.empty(H + 1, dtype=np.int64)  # neurons of one row only
        ua = np.empty(H + 1, dtype=gz.dtype)
        jo = np.empty(H + 1, dtype=np.int64)
        uo = np.empty(H + 1, dtype=gz.dtype)
        gzs = np.empty((2, H), dtype=gz.dtype)
        for k in range(n - 1, -1, -1):
            for r0 in range(b0, b1, 2):
                r1 = min(r0 + 2, b1)
                for r in range(r0, r1):
                    gk, sk, gIk, cvb, czb = gz[k, r], sg[k, r], gI[k, r], cv[r], cz[r]
                    gr = gzs[r - r0]
                    for i in range(H):
                        gzi = (gk[i] + czb[i]) * sk[i]
                        gvi = gzi + cvb[i]
                        gIk[i] = gvi
                        cvb[i] = beta * gvi
                        gr[i] = gzi
                    if not recurrent:
                        for i in range(H):
                            czb[i] = -thr0 * gIk[i]
                    elif k == n - 1:
                        Pb = P[r]
                        for i in range(H):
                            czb[i] = Pb[i]
                    else:
                        for i in range(H):
                            czb[i] = beta * czb[i]
                if not recurrent:
                    continue
                if r1 - r0 == 1:
                    m = 0
                    g0 = gzs[0]
                    for j in range(H):
                        if g0[j] != zero:
                            ja[m] = j
                            ua[m] = g0[j]
                            m += 1
                    add_rows(cz[r0], w_back, ja, ua, m)
                else:
                    mb = ma = mo = 0
                    g0, g1 = gzs[0], gzs[1]
                    for j in range(H):  # branch-free: the three lists' slots written always
                        x, y = g0[j], g1[j]
                        fx, fy = x != zero, y != zero
                        jb[mb] = j
                        va[mb] = x
                        vb[mb] = y
                        mb += fx & fy
                        ja[ma] = j
                        ua[ma] = x
                        ma += fx & (not fy)
                        jo[mo] = j
                        uo[mo] = y
                        mo += fy & (not fx)
                    _add_rows2(cz[r0], cz[r0 + 1], w_back, jb, va, vb, mb)
                    add_rows(cz[r0], w_back, ja, ua, ma)
                    add_rows(cz[r0 + 1], w_back, jo, uo, mo)
                if k == 0:
                    for r in range(r0, r1):
                        Pb, czb = P[r], cz[r]
                        for i in range(H):
                            Pb[i] = beta * czb[i]

    @jit(parallel=True, error_model="numpy")
    def _lif_back_sparse(gz, sg, w_back, cv, cz, P, gI, beta, thr0, recurrent, nchunk):
        # batch rows are independent: nchunk ranges of row pairs, one per thread
        B = gz.shape[1]
        for ch in numba.prange(nchunk):
            p0, p1 = chunk_range(ch, (B + 1) // 2, nchunk)
            b0, b1 = 2 * p0, min(B, 2 * p1)
            if b1 > b0:
                _lif_back_rows(gz, sg, w_back, cv, cz, P, gI, beta, thr0, recurrent, b0, b1)


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
    args = (_np(gz.contiguous()), _np(sg), wb, _np(cv), _np(cz), _np(P), _np(gI),
            npdt(beta), npdt(threshold), w_back is not None)
    B = gz.shape[1]
    nt = min(threads(), (B + 1) // 2)  # threads own pairs of rows
    if nt > 1:
        _lif_back_sparse(*args, nt)
    else:  # one thread: the serial kernel, same arithmetic
        _lif_back_rows(*args, 0, B)
