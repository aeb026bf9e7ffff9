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
    @jit
    def _membrane(cur, wt, v, a, z, spikes, c, sub, alif, recurrent, replay, vs, thrs):
        n, B, H = cur.shape
        N = B * H
        beta, thr0, rho, adapt, one = c[0], c[1], c[2], c[3], c[4]
        zero = one - one
        keep_v = vs.shape[0] > 0
        keep_t = thrs.shape[0] > 0
        v1, z1 = v.reshape(N), z.reshape(N)
        a1 = a.reshape(N) if alif else v1
        rec = np.zeros((B, H), dtype=cur.dtype)
        rec1 = rec.reshape(N)
        thr = np.full(N, thr0, dtype=cur.dtype)
        for k in range(n):
            c1 = cur[k].reshape(N)
            s1 = spikes[k].reshape(N)
            if recurrent:  # rec[b] = sum of W_rec^T rows of the neurons that spiked
                for b in range(B):
                    for i in range(H):
                        rec[b, i] = zero
                    for j in range(H):
                        zj = z[b, j]
                        if zj == one:
                            for i in range(H):
                                rec[b, i] += wt[j, i]
                        elif zj != zero:
                            for i in range(H):
                                rec[b, i] += zj * wt[j, i]
            if alif:
                for i in range(N):
                    a1[i] = rho * a1[i] + z1[i]
                    thr[i] = thr0 + adapt * a1[i]
            if recurrent:
                if sub:
                    for i in range(N):
                        v1[i] = beta * v1[i] + (c1[i] + rec1[i]) - thr[i] * z1[i]
                else:
                    for i in range(N):
                        v1[i] = beta * v1[i] * (one - z1[i]) + (c1[i] + rec1[i])
            else:
                if sub:
                    for i in range(N):
                        v1[i] = beta * v1[i] + c1[i] - thr[i] * z1[i]
                else:
                    for i in range(N):
                        v1[i] = beta * v1[i] * (one - z1[i]) + c1[i]
            if keep_v:
                vs[k].reshape(N)[:] = v1
            if keep_t:
                thrs[k].reshape(N)[:] = thr
            if not replay:
                if thr0 > zero:
                    for i in range(N):
                        s1[i] = v1[i] > thr[i]
                else:
                    for i in range(N):
                        s1[i] = (v1[i] - thr[i]) / thr0 > zero
            for i in range(N):
                z1[i] = one if s1[i] else zero

    @jit
    def _rec_grad(gT, zprev, g):
        n, B, H = g.shape
        for k in range(n):
            for b in range(B):
                for j in range(H):
                    if zprev[k, b, j]:
                        for i in range(H):
                            gT[j, i] += g[k, b, i]


def membrane_block(cur: torch.Tensor, w_rec_t: torch.Tensor | None, v: torch.Tensor,
                   a: torch.Tensor | None, z: torch.Tensor, spikes: torch.Tensor, *,
                   beta: float, threshold: float, reset: str, rho: float = 0.0,
                   adapt: float = 0.0, replay: bool = False, keep_v: bool = False,
                   keep_thr: bool = False):
    """Run ``n`` steps of a LIF/ALIF layer from state ``(v, a, z)`` (``[B, H]`` each, updated
    in place; pass copies). ``cur [n, B, H]`` input current; ``w_rec_t [H, H]`` is
    ``W_rec^T`` contiguous (None: no recurrence); ``spikes [n, B, H]`` bool, written
    (forward) or read (``replay=True``). Returns ``(vs, thrs)``, the membrane and threshold
    after each step ``[n, B, H]`` when asked for (else None)."""
    n, B, H = cur.shape
    dt = cur.dtype
    npdt = np.float32 if dt == torch.float32 else np.float64
    c = np.array([beta, threshold, rho, adapt, 1.0], dtype=npdt)
    empty = np.empty((0, 0, 0), dtype=npdt)
    vs = torch.empty(n, B, H, dtype=dt) if keep_v else None
    thrs = torch.empty(n, B, H, dtype=dt) if keep_thr else None
    alif = a is not None
    wt = _np(w_rec_t) if w_rec_t is not None else np.empty((0, 0), dtype=npdt)
    _membrane(_np(cur.contiguous()), wt, _np(v), _np(a) if alif else np.empty((0, 0), dtype=npdt),
              _np(z), _np(spikes), c, reset == "subtract", alif, w_rec_t is not None, replay,
              _np(vs) if keep_v else empty, _np(thrs) if keep_thr else empty)
    return vs, thrs


def recurrent_grad(g_rec_t: torch.Tensor, zprev: torch.Tensor, g: torch.Tensor) -> None:
    """Accumulate ``g_rec_t [H, H] += sum_{t,b} zprev[t, b]^T g[t, b]`` in place (that is
    ``(g^T z_{t-1})^T``, the transposed recurrent weight gradient). ``zprev`` bool or 0/1
    ``[n, B, H]``, ``g [n, B, H]``."""
    zb = zprev if zprev.dtype == torch.bool else zprev != 0
    _rec_grad(_np(g_rec_t), _np(zb.contiguous()), _np(g.contiguous()))


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
