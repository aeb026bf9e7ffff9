"""Compiled CPU loops of the fused LIF/ALIF layer (numba).

The per-step work of a spiking layer is tiny (a few element-wise ops on ``[B, H]`` and a
recurrent product with a sparse, binary ``z``), so in eager PyTorch it is dominated by
dispatch overhead and by a dense ``[B, H] @ [H, H]`` matmul that mostly multiplies zeros.
These kernels run a whole block of steps in one compiled call:

- :func:`membrane_block`: the membrane recursion over ``n`` steps, with the recurrent
  current gathered from the rows of ``W_rec^T`` of the neurons that spiked (exact: a
  binary ``z`` only selects rows), either computing the spikes (forward) or reading stored
  ones (replay in backward, which then gives the very same membranes);
- :func:`recurrent_grad`: ``G_rec^T += sum_t z_{t-1}^T g_t`` by scattering each ``g`` row
  into the rows of the neurons that spiked (``[n, B, H]`` in, ``[H, H]`` accumulated).

Element-wise ops follow :meth:`spiketrain.models.neurons.LIFLayer.dynamics` in the same
order and precision (float32 stays float32), so results agree with the eager loop to
rounding of the recurrent sum's order. Used for CPU tensors of float32/float64 when numba
imports; otherwise (CUDA, other dtypes, ``SPIKETRAIN_KERNELS=torch``) the eager path runs.
"""
from __future__ import annotations

import os

import numpy as np
import torch

try:  # numba is a dependency; stay importable without it (eager fallback)
    import numba
except ImportError:  # pragma: no cover - exercised only where numba is missing
    numba = None

ENV = "SPIKETRAIN_KERNELS"


def available(*tensors: torch.Tensor) -> bool:
    """True when the compiled loops can run on these tensors (CPU, float32/float64)."""
    if numba is None or os.environ.get(ENV, "numba") == "torch":
        return False
    return all(t is None or (t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64))
               for t in tensors)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy()


if numba is not None:
    _jit = numba.njit(cache=True, nogil=True, boundscheck=False)

    @_jit
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

    @_jit
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


if numba is not None:
    @_jit
    def _scan(x, rows, cols, vals, keep_vals):
        R, N = x.shape
        m = 0
        binary = True
        for r in range(R):
            for i in range(N):
                xi = x[r, i]
                if xi != 0:
                    rows[m] = r
                    cols[m] = i
                    if keep_vals:
                        vals[m] = xi
                        if xi != 1:
                            binary = False
                    m += 1
        return m, binary

    @_jit
    def _count(x):
        R, N = x.shape
        m = 0
        for r in range(R):
            for i in range(N):
                if x[r, i] != 0:
                    m += 1
        return m

    @_jit
    def _scatter(gT, rows, cols, vals, g, has_vals):
        H = g.shape[1]
        for q in range(rows.shape[0]):
            r, c = rows[q], cols[q]
            if has_vals:
                w = vals[q]
                for i in range(H):
                    gT[c, i] += w * g[r, i]
            else:
                for i in range(H):
                    gT[c, i] += g[r, i]


def nonzero_index(x: torch.Tensor, binary: bool | None = None):
    """Entries of ``x [R, N]`` that are not zero, row-major, in one compiled pass:
    ``(rows int32, cols int32, vals or None)``; ``vals`` is None for bool inputs, when
    ``binary`` is True, or (``binary`` None) when every active value is 1."""
    xn = _np(x.contiguous())
    if x.dtype == torch.bool:
        xn = xn.view(np.uint8)
    nnz = _count(xn)
    rows = np.empty(nnz, dtype=np.int32)
    cols = np.empty(nnz, dtype=np.int32)
    keep = not (binary or x.dtype == torch.bool)
    vals = np.empty(nnz if keep else 0, dtype=xn.dtype)
    _, all_one = _scan(xn, rows, cols, vals, keep)
    v = torch.from_numpy(vals) if keep and not (binary is None and all_one) else None
    return torch.from_numpy(rows), torch.from_numpy(cols), v


def scatter_grad(rows: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor | None,
                 g: torch.Tensor, n_in: int) -> torch.Tensor:
    """``g^T @ x`` for a sparse ``x`` given by ``(rows, cols, vals)``: ``g [R, H] ->
    [H, n_in]`` (a transposed view of a contiguous ``[n_in, H]`` accumulator)."""
    gT = torch.zeros(n_in, g.shape[1], dtype=g.dtype)
    has = vals is not None
    vn = _np(vals.to(g.dtype)) if has else np.empty(0, dtype=_np(g).dtype)
    _scatter(_np(gT), _np(rows), _np(cols), vn, _np(g.contiguous()), has)
    return gT.t()


if numba is not None:
    @_jit
    def _leaky_fwd(u, b, o0, kappa, out):
        T, B, C = u.shape
        k = kappa[0]
        for bb in range(B):
            for c in range(C):
                o = o0[bb, c]
                for t in range(T):
                    o = (k * o + u[t, bb, c]) + b[c]
                    out[t, bb, c] = o

    @_jit
    def _leaky_bwd(go, kappa, gu):
        T, B, C = go.shape
        k = kappa[0]
        for bb in range(B):
            for c in range(C):
                acc = go[T - 1, bb, c]
                gu[T - 1, bb, c] = acc
                for t in range(T - 2, -1, -1):
                    acc = go[t, bb, c] + k * acc
                    gu[t, bb, c] = acc


def leaky_forward(u: torch.Tensor, b: torch.Tensor, o0: torch.Tensor, kappa: float) -> torch.Tensor:
    """``o_t = (kappa o_{t-1} + u_t) + b`` over ``u [T, B, C]`` from ``o0 [B, C]``."""
    out = torch.empty_like(u)
    k = np.array([kappa], dtype=_np(u).dtype)
    _leaky_fwd(_np(u.contiguous()), _np(b.detach().contiguous()), _np(o0.detach().contiguous()),
               k, _np(out))
    return out


def leaky_backward(go: torch.Tensor, kappa: float) -> torch.Tensor:
    """Reverse of :func:`leaky_forward` w.r.t. ``u``: ``gu_t = go_t + kappa gu_{t+1}``."""
    gu = torch.empty_like(go)
    k = np.array([kappa], dtype=_np(go).dtype)
    _leaky_bwd(_np(go.contiguous()), k, _np(gu))
    return gu
