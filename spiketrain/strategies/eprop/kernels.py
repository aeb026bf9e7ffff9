"""Compiled (numba) loops of the e-prop strategy: per-neuron recursions and per-synapse updates.

All arrays are NumPy views of CPU tensors (float32 or float64; one compiled version per
dtype, cached on disk). Shapes use ``K`` steps per chunk, ``B`` batch rows, ``H`` neurons,
``n`` presynaptic units, ``R`` trace components per synapse and ``N = B * H``.

- :func:`sweep`: backward sweep over a chunk's per-neuron ``R x R`` transition matrices.
- :func:`carry` / :func:`carry_factorised`: one pass over the per-synapse trace per chunk
  (gradient of the trace carried into the chunk, then the trace carried over the chunk).
- :func:`scatter`: presynaptic events (nonzeros of ``q``) add per-neuron rows to the
  gradient and the trace; work proportional to the number of events.
- :func:`project`: input current ``q W^T`` from events.

Neuron maths is not here: a layer's compiled forward with its Jacobians is the layer's own
capability (``layer.eprop_kernel()``, e.g. :mod:`spiketrain.models.snn.eprop_kernel`).
"""
from __future__ import annotations

import numba as nb
import numpy as np

_BLOCK = 256  # neurons per block in the sweep (its working set stays in L1/L2)


@nb.njit(cache=True)
def sweep(A, c, L, delta, rho, lam0, Phi):
    """Backward sweep over one chunk (exact regrouping of the chunk's trace sums).

    For per-neuron linear recursions ``u_s = A_s u_{s-1} + c_s q_s`` (``u`` has ``R``
    components; the last one is weighted by the learning signal ``L_s``) computes

    - ``delta [K, N]``: weight of ``q_s`` in ``sum_s L_s u_s[R-1]``,
    - ``rho [K, R, N]``: weight of ``q_s`` in ``u_end``,
    - ``lam0 [R, N]``: weight of ``u_start`` in ``sum_s L_s u_s[R-1]``,
    - ``Phi [R, R, N]``: ``u_end = Phi u_start + sum_s rho_s q_s``.

    A ``[K, R, R, N]`` (``A[s, m, k] = d u_s[m] / d u_{s-1}[k]``), c ``[K, R, N]``, L ``[K, N]``.
    Neurons are processed in blocks; the innermost loops run over contiguous neurons.
    """
    K, R, _, N = A.shape
    lam = np.zeros((R + 1, R, _BLOCK), A.dtype)
    new = np.zeros((R + 1, R, _BLOCK), A.dtype)
    for n0 in range(0, N, _BLOCK):
        nb_ = min(N, n0 + _BLOCK) - n0
        n1 = n0 + nb_
        lam[:] = 0.0
        for r in range(R):
            lam[r + 1, r, :] = 1.0
        for s in range(K - 1, -1, -1):
            ls = L[s, n0:n1]
            l0 = lam[0, R - 1]
            for n in range(nb_):
                l0[n] += ls[n]
            for r in range(R + 1):  # row . c_s: row 0 -> delta, rows 1..R -> rho
                out = delta[s, n0:n1] if r == 0 else rho[s, r - 1, n0:n1]
                lr = lam[r, 0]
                cs = c[s, 0, n0:n1]
                for n in range(nb_):
                    out[n] = lr[n] * cs[n]
                for m in range(1, R):
                    lr = lam[r, m]
                    cs = c[s, m, n0:n1]
                    for n in range(nb_):
                        out[n] += lr[n] * cs[n]
            for r in range(R + 1):  # rows <- rows A_s
                for k in range(R):
                    nw = new[r, k]
                    lr = lam[r, 0]
                    ak = A[s, 0, k, n0:n1]
                    for n in range(nb_):
                        nw[n] = lr[n] * ak[n]
                    for m in range(1, R):
                        lr = lam[r, m]
                        ak = A[s, m, k, n0:n1]
                        for n in range(nb_):
                            nw[n] += lr[n] * ak[n]
            lam, new = new, lam
        for m in range(R):
            lam0[m, n0:n1] = lam[0, m, :nb_]
            for k in range(R):
                Phi[m, k, n0:n1] = lam[m + 1, k, :nb_]


@nb.njit(cache=True)
def sweep2(A, c, L, delta, rho, lam0, Phi):
    """:func:`sweep` for ``R = 2``: one fused loop per step over a block of neurons."""
    K, R, _, N = A.shape
    st = np.zeros((6, _BLOCK), A.dtype)  # rows (lam, Phi_v, Phi_e) x components (v, e)
    for n0 in range(0, N, _BLOCK):
        nb_ = min(N, n0 + _BLOCK) - n0
        n1 = n0 + nb_
        l00, l01, l10, l11, l20, l21 = st[0], st[1], st[2], st[3], st[4], st[5]
        for n in range(nb_):
            l00[n] = 0.0
            l01[n] = 0.0
            l10[n] = 1.0
            l11[n] = 0.0
            l20[n] = 0.0
            l21[n] = 1.0
        for s in range(K - 1, -1, -1):
            ls = L[s, n0:n1]
            c0 = c[s, 0, n0:n1]
            c1 = c[s, 1, n0:n1]
            a00 = A[s, 0, 0, n0:n1]
            a01 = A[s, 0, 1, n0:n1]
            a10 = A[s, 1, 0, n0:n1]
            a11 = A[s, 1, 1, n0:n1]
            de = delta[s, n0:n1]
            r0 = rho[s, 0, n0:n1]
            r1 = rho[s, 1, n0:n1]
            for n in range(nb_):
                x0 = l00[n]
                x1 = l01[n] + ls[n]
                y0 = l10[n]
                y1 = l11[n]
                w0 = l20[n]
                w1 = l21[n]
                de[n] = x0 * c0[n] + x1 * c1[n]
                r0[n] = y0 * c0[n] + y1 * c1[n]
                r1[n] = w0 * c0[n] + w1 * c1[n]
                l00[n] = x0 * a00[n] + x1 * a10[n]
                l01[n] = x0 * a01[n] + x1 * a11[n]
                l10[n] = y0 * a00[n] + y1 * a10[n]
                l11[n] = y0 * a01[n] + y1 * a11[n]
                l20[n] = w0 * a00[n] + w1 * a10[n]
                l21[n] = w0 * a01[n] + w1 * a11[n]
        lam0[0, n0:n1] = l00[:nb_]
        lam0[1, n0:n1] = l01[:nb_]
        Phi[0, 0, n0:n1] = l10[:nb_]
        Phi[0, 1, n0:n1] = l11[:nb_]
        Phi[1, 0, n0:n1] = l20[:nb_]
        Phi[1, 1, n0:n1] = l21[:nb_]


@nb.njit(cache=True)
def events(q):
    """Nonzeros of ``q [K, B, n]`` grouped by presynaptic unit ``(b, j)``, in time order:
    ``ptr [B*n+1]`` (offsets), ``steps``, ``vals``."""
    K, B, n = q.shape
    ptr = np.zeros(B * n + 1, np.int64)
    for s in range(K):
        for b in range(B):
            row = q[s, b]
            cnt = ptr[b * n + 1:(b + 1) * n + 1]
            for j in range(n):
                cnt[j] += row[j] != 0.0
    for k in range(B * n):
        ptr[k + 1] += ptr[k]
    pos = ptr[:-1].copy()
    steps = np.empty(ptr[B * n], np.int64)
    vals = np.empty(ptr[B * n], q.dtype)
    for s in range(K):
        for b in range(B):
            row = q[s, b]
            base = b * n
            for j in range(n):
                if row[j] != 0.0:
                    k = pos[base + j]
                    steps[k] = s
                    vals[k] = row[j]
                    pos[base + j] = k + 1
    return ptr, steps, vals


@nb.njit(cache=True)
def events_from_index(times, batch, units, K, B, n):
    """:func:`events` of a binary spike train given as indices (``times`` sorted, relative to
    the chunk start; duplicates count once), without building the dense ``[K, B, n]``."""
    ptr = np.zeros(B * n + 1, np.int64)
    for e in range(times.shape[0]):
        ptr[batch[e] * n + units[e] + 1] += 1
    for k in range(B * n):
        ptr[k + 1] += ptr[k]
    pos = ptr[:-1].copy()
    steps = np.empty(ptr[B * n], np.int64)
    for e in range(times.shape[0]):
        g = batch[e] * n + units[e]
        steps[pos[g]] = times[e]
        pos[g] += 1
    # drop duplicates (same step twice in a group; steps are in time order per group)
    out = 0
    start = 0
    for g in range(B * n):
        end = ptr[g + 1]
        ptr[g] = out
        for e in range(start, end):
            if e == start or steps[e] != steps[e - 1]:
                steps[out] = steps[e]
                out += 1
        start = end
    ptr[B * n] = out
    return ptr, steps[:out].copy(), np.ones(out)


@nb.njit(cache=True)
def update(u, lam0, Phi, ptr, steps, vals, delta, rho, grad_t, carry_in, advance):
    """One pass over the per-synapse trace for one chunk, presynaptic unit by unit:

    - ``carry_in``: ``grad_t[j] += sum_m lam0[m, b] * u[b, m, j]`` (the trace carried in),
      then, if ``advance``, ``u[b, :, j] <- Phi[:, :, b] u[b, :, j]`` per neuron (the last
      component, ``ebar``, feeds no other: ``Phi[m, R-1] = 0`` for ``m < R-1``);
    - each event ``(s, val)`` of unit ``(b, j)``: ``grad_t[j] += val delta[s, b]`` and, if
      ``advance``, ``u[b, m, j] += val rho[s, m, b]``.

    u ``[B, R, n, H]`` (in place), lam0 ``[R, B, H]``, Phi ``[R, R, B, H]``, events from
    :func:`events`, delta ``[K, B, H]``, rho ``[K, R, B, H]``, grad_t ``[n, H]``.
    """
    B, R, n, H = u.shape
    tmp = np.empty((R, H), u.dtype)
    for b in range(B):  # the trace is streamed in memory order
        for j in range(n):
            g = grad_t[j]
            if carry_in:
                for m in range(R):
                    um = u[b, m, j]
                    lm = lam0[m, b]
                    for i in range(H):
                        g[i] += lm[i] * um[i]
                if advance:
                    for m in range(R):
                        t = tmp[m]
                        pk = Phi[m, 0, b]
                        uk = u[b, 0, j]
                        for i in range(H):
                            t[i] = pk[i] * uk[i]
                        for k in range(1, R if m == R - 1 else R - 1):
                            pk = Phi[m, k, b]
                            uk = u[b, k, j]
                            for i in range(H):
                                t[i] += pk[i] * uk[i]
                    for m in range(R):
                        um = u[b, m, j]
                        t = tmp[m]
                        for i in range(H):
                            um[i] = t[i]
            for e in range(ptr[b * n + j], ptr[b * n + j + 1]):
                s = steps[e]
                val = vals[e]
                d = delta[s, b]
                for i in range(H):
                    g[i] += val * d[i]
                if advance:
                    for m in range(R):
                        um = u[b, m, j]
                        rm = rho[s, m, b]
                        for i in range(H):
                            um[i] += val * rm[i]


@nb.njit(cache=True)
def update2(u, lam0, Phi, ptr, steps, vals, delta, rho, grad_t, carry_in, advance):
    """:func:`update` for ``R = 2`` (LIF: ``(e_v, ebar)``), one fused loop per row."""
    B, R, n, H = u.shape
    for b in range(B):  # the trace is streamed in memory order
        l0 = lam0[0, b]
        l1 = lam0[1, b]
        p00 = Phi[0, 0, b]
        p10 = Phi[1, 0, b]
        p11 = Phi[1, 1, b]
        for j in range(n):
            g = grad_t[j]
            u0 = u[b, 0, j]
            u1 = u[b, 1, j]
            if carry_in:
                if advance:
                    for i in range(H):
                        a0 = u0[i]
                        a1 = u1[i]
                        g[i] += l0[i] * a0 + l1[i] * a1
                        u0[i] = p00[i] * a0
                        u1[i] = p10[i] * a0 + p11[i] * a1
                else:
                    for i in range(H):
                        g[i] += l0[i] * u0[i] + l1[i] * u1[i]
            for e in range(ptr[b * n + j], ptr[b * n + j + 1]):
                s = steps[e]
                val = vals[e]
                d = delta[s, b]
                if advance:
                    r0 = rho[s, 0, b]
                    r1 = rho[s, 1, b]
                    for i in range(H):
                        g[i] += val * d[i]
                        u0[i] += val * r0[i]
                        u1[i] += val * r1[i]
                else:
                    for i in range(H):
                        g[i] += val * d[i]


@nb.njit(cache=True)
def update_factorised(ebar, xbar, lam_e, phi_ee, phi_ex, ptr, steps, vals, delta, rho_e, grad_t,
                      carry_in, advance):
    """:func:`update` for the factorised trace: ``ebar [B, n, H]`` is the only per-synapse
    component; the others are the presynaptic traces ``xbar [B, P, n]``:
    ``grad_t[j] += lam_e[b] ebar[b, j]``, ``ebar[b, j] <- phi_ee[b] ebar[b, j] +
    sum_p phi_ex[p, b] xbar[b, p, j]``, events add ``val delta[s, b]`` to ``grad_t[j]`` and
    ``val rho_e[s, b]`` to ``ebar[b, j]``. lam_e/phi_ee ``[B, H]``, phi_ex ``[P, B, H]``,
    rho_e ``[K, B, H]``.
    """
    B, n, H = ebar.shape
    P = xbar.shape[1]
    for b in range(B):  # the trace is streamed in memory order
        le = lam_e[b]
        pe = phi_ee[b]
        for j in range(n):
            g = grad_t[j]
            eb = ebar[b, j]
            if carry_in:
                for i in range(H):
                    g[i] += le[i] * eb[i]
                if advance:
                    for i in range(H):
                        eb[i] = pe[i] * eb[i]
                    for p in range(P):
                        xv = xbar[b, p, j]
                        if xv != 0.0:
                            px = phi_ex[p, b]
                            for i in range(H):
                                eb[i] += px[i] * xv
            for e in range(ptr[b * n + j], ptr[b * n + j + 1]):
                s = steps[e]
                val = vals[e]
                d = delta[s, b]
                for i in range(H):
                    g[i] += val * d[i]
                if advance:
                    r = rho_e[s, b]
                    for i in range(H):
                        eb[i] += val * r[i]


@nb.njit(cache=True)
def presyn(ptr, steps, vals, r, xbar):
    """``xbar[b, p, j] += sum_s r[s, p] q[s, b, j]`` over the events of ``q``; r ``[K, P]``,
    xbar ``[B, P, n]``."""
    B, P, n = xbar.shape
    for b in range(B):
        for j in range(n):
            for e in range(ptr[b * n + j], ptr[b * n + j + 1]):
                s = steps[e]
                val = vals[e]
                for p in range(P):
                    xbar[b, p, j] += val * r[s, p]


@nb.njit(cache=True)
def project(ptr, steps, vals, w_t, out):
    """``out[s, b] += sum_j q[s, b, j] w_t[j]`` over the events of ``q`` (:func:`events`);
    ``w_t [n, H]`` (the weight transposed), ``out [K, B, H]``."""
    K, B, H = out.shape
    n = w_t.shape[0]
    for b in range(B):
        for j in range(n):
            w = w_t[j]
            for e in range(ptr[b * n + j], ptr[b * n + j + 1]):
                o = out[steps[e], b]
                val = vals[e]
                for i in range(H):
                    o[i] += val * w[i]
