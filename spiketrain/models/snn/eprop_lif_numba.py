"""e-prop's compiled LIF/ALIF chunk kernel: the ops of :func:`.neurons.lif_membrane` over a
chunk of steps, with the reduced per-neuron Jacobians e-prop's traces need (used by
:mod:`.eprop_kernel`). The surrogate kinds are :data:`.lif_numba.SURROGATES`."""
from __future__ import annotations

import math

import numpy as np

from ...hardware.compiled import jit


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
