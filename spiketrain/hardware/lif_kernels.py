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
