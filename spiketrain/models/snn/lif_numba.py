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
- :func:`lif_chunk` (e-prop, :mod:`.eprop_kernel`): the same update over a chunk with the
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


@jit(nogil=False, boundscheck=None)
def lif_chunk(i_in, w_rec_t, recurrent, v, a, z, psi, beta, theta, subtract, alif, rho_a,
              adapt, sg_kind, sg_scale, kappa, z_out, z_prev, A, c, h_rec, cur_rec, consts):
    """LIF/ALIF layer over a chunk (the ops of ``LIFLayer``/``ALIFLayer.dynamics``) and its
    reduced per-neuron Jacobians.

    i_in ``[K, B, H]`` feed-forward current; w_rec_t ``[H, H]`` (``W_rec^T``); state v, a, z,
    psi (``dz/dv`` of the previous step) ``[B, H]``, updated in place. Writes spikes
    ``z_out [K, B, H]``, the previous step's spikes ``z_prev [K, B, H]`` and the transition
    ``A [K, R, R, B, H]`` / input column ``c [K, R, B, H]`` of the per-synapse trace
    ``(e_v[, e_a], ebar)`` (``R = 2`` LIF, ``3`` ALIF): the spike's trace is eliminated
    with ``e_z = dz/dv e_v + dz/da e_a``, ``ebar`` is ``e_z`` filtered by ``kappa``.
    If ``h_rec [K, 2, B, H]`` / ``cur_rec [K, B, H]`` are not empty, the previous ``(v, a)``
    and the input current of every step are recorded there (for checking).
    ``consts`` False: the constant entries of ``A``/``c`` are already in place (buffers
    reused from the previous chunk). Branches are hoisted out of the neuron loops so that
    those loops vectorise.
    """
    K, B, H = i_in.shape
    record = cur_rec.shape[0] > 0
    dt = i_in.dtype
    cur = np.empty(H, dt)
    idx = np.empty(H, np.int64)
    thr = np.empty(H, dt)
    avv = np.empty(H, dt)
    ava = np.zeros(H, dt)
    avz = np.empty(H, dt)
    x = np.empty(H, dt)
    p = np.empty(H, dt)
    ad = adapt if alif else 0.0
    # constants in the arrays' precision (float32 arithmetic stays float32 and vectorises)
    one = i_in.dtype.type(1.0)
    zero = i_in.dtype.type(0.0)
    k_s = i_in.dtype.type(sg_scale)
    k_0 = i_in.dtype.type(sg_scale / (2.0 * theta))
    k_1 = i_in.dtype.type(1.0 / theta)
    k_2 = i_in.dtype.type(math.pi * sg_scale / 2.0)
    k_3 = i_in.dtype.type(sg_scale / theta)
    inv_theta = i_in.dtype.type(1.0 / theta)
    beta_ = i_in.dtype.type(beta)
    theta_ = i_in.dtype.type(theta)
    for s in range(K):
        for b in range(B):
            zb = z[b]
            vb = v[b]
            ab = a[b]
            pb = psi[b]
            ib = i_in[s, b]
            zpo = z_prev[s, b]
            for i in range(H):
                cur[i] = ib[i]
                zpo[i] = zb[i]
            if recurrent:
                cnt = 0
                for j in range(H):
                    if zb[j] != 0.0:
                        idx[cnt] = j
                        cnt += 1
                for k in range(cnt):
                    zj = zb[idx[k]]
                    w = w_rec_t[idx[k]]
                    for i in range(H):
                        cur[i] += zj * w[i]
            if record:
                for i in range(H):
                    h_rec[s, 0, b, i] = vb[i]
                    h_rec[s, 1, b, i] = ab[i]
                    cur_rec[s, b, i] = cur[i]
            lif_sub = subtract and not alif
            if lif_sub:  # the common case in one loop
                for i in range(H):
                    vn = beta_ * vb[i] + cur[i] - theta_ * zpo[i]
                    vb[i] = vn
                    x[i] = (vn - theta_) * inv_theta
            elif alif:
                for i in range(H):
                    an = rho_a * ab[i] + zpo[i]
                    ab[i] = an
                    thr[i] = theta + adapt * an
            else:
                for i in range(H):
                    thr[i] = theta
            if lif_sub:
                pass
            elif subtract:
                for i in range(H):
                    zp = zpo[i]
                    vb[i] = beta * vb[i] + cur[i] - thr[i] * zp
                    avv[i] = beta
                    ava[i] = -ad * rho_a * zp
                    avz[i] = -(thr[i] + ad * zp)
            else:
                for i in range(H):
                    zp = zpo[i]
                    avz[i] = -beta * vb[i]
                    vb[i] = beta * vb[i] * (1.0 - zp) + cur[i]
                    avv[i] = beta * (1.0 - zp)
            if not lif_sub:
                for i in range(H):
                    x[i] = (vb[i] - thr[i]) * inv_theta
            if sg_kind == 0:
                for i in range(H):
                    d = one + k_s * abs(x[i])
                    p[i] = k_0 / (d * d)
            elif sg_kind == 1:
                for i in range(H):
                    d = one + k_s * abs(x[i])
                    p[i] = k_1 / (d * d)
            elif sg_kind == 2:
                for i in range(H):
                    y = k_2 * x[i]
                    p[i] = k_0 / (one + y * y)
            else:
                for i in range(H):
                    p[i] = k_3 * max(zero, one - abs(x[i]))
            zo = z_out[s, b]
            for i in range(H):
                zo[i] = one if x[i] > zero else zero
                zb[i] = zo[i]
            a00 = A[s, 0, 0, b]
            a01 = A[s, 0, 1, b]
            a10 = A[s, 1, 0, b]
            a11 = A[s, 1, 1, b]
            c0 = c[s, 0, b]
            c1 = c[s, 1, b]
            if alif:
                a02 = A[s, 0, 2, b]
                a12 = A[s, 1, 2, b]
                a20 = A[s, 2, 0, b]
                a21 = A[s, 2, 1, b]
                a22 = A[s, 2, 2, b]
                c2 = c[s, 2, b]
                for i in range(H):
                    pp = pb[i]
                    r_vv = avv[i] + avz[i] * pp
                    r_va = ava[i] - avz[i] * adapt * pp
                    r_aa = rho_a - adapt * pp
                    a00[i] = r_vv
                    a01[i] = r_va
                    a02[i] = 0.0
                    a10[i] = pp
                    a11[i] = r_aa
                    a12[i] = 0.0
                    a20[i] = p[i] * (r_vv - adapt * pp)
                    a21[i] = p[i] * (r_va - adapt * r_aa)
                    a22[i] = kappa
                    c0[i] = 1.0
                    c1[i] = 0.0
                    c2[i] = p[i]
                    pb[i] = p[i]
            elif lif_sub:
                for i in range(H):
                    d = beta_ - theta_ * pb[i]
                    a00[i] = d
                    a10[i] = p[i] * d
                    c1[i] = p[i]
                    pb[i] = p[i]
                if consts:
                    for i in range(H):
                        a01[i] = 0.0
                        a11[i] = kappa
                        c0[i] = 1.0
            else:
                for i in range(H):
                    d = avv[i] + avz[i] * pb[i]
                    a00[i] = d
                    a01[i] = 0.0
                    a10[i] = p[i] * d
                    a11[i] = kappa
                    c0[i] = 1.0
                    c1[i] = p[i]
                    pb[i] = p[i]
