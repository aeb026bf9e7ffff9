"""Eager (pure PyTorch) eligibility traces, one chunk of ``K`` steps at a time; any device.

Used by :mod:`.eager` (the e-prop path off the CPU or with ``SPIKETRAIN_KERNELS=torch``);
the compiled CPU path has its own traces in :mod:`.traces`.

For neuron ``i`` of batch row ``b`` and a weight ``W[i, j]`` with presynaptic signal
``q_t[b, j]`` (input ``x_t``, a lower layer's ``z_t``, or the layer's own ``z_{t-1}`` for
recurrent weights) the eligibility trace ``e_t = dh_t / dW[i, j]`` (one entry per state
component) obeys, with the per-neuron Jacobians ``A_t`` (``C x C``) and ``c_t`` (``C``)::

    e_t    = A_t e_{t-1} + c_t q_t[b, j]
    ebar_t = kappa ebar_{t-1} + e^z_t           (trace filtered by the readout decay)
    grad W[i, j] += sum_b L_t[b, i] ebar_t[b, i, j]

Stacking ``u_t = (e_t, ebar_t)`` (``C + 1`` values per synapse and batch row) gives one
linear recursion ``u_t = Ahat_t u_{t-1} + chat_t q_t``. Within a chunk the sums are regrouped
exactly (no approximation): a backward sweep over the chunk's ``K`` per-neuron Jacobians gives

- ``lam_s`` with ``sum_t w_t . u_t = lam_0 . u_start + sum_s (lam_s . chat_s) q_s``,
- ``Phi`` and ``rho_s`` with ``u_end = Phi u_start + sum_s rho_s q_s``,

so per step only per-neuron ``[B, H]`` quantities are touched, the synapse-level work is two
matrix products over the chunk (``delta^T q`` and ``rho^T q``), and the per-synapse trace
``u`` ``[B, H, C+1, n_pre]`` is read and written once per chunk. ``K = 1`` is the textbook
step-by-step trace update; every ``K`` gives the same result up to rounding.
"""
from __future__ import annotations

import warnings

import torch
from torch import Tensor


class ChunkAdjoint:
    """Backward sweep over one chunk for one layer (shared by all its weight matrices).

    Args:
        A ``[K, C, C, B, H]``, c ``[K, C, B, H]`` (per-neuron Jacobians), kappa (readout
        decay), L ``[K, B, H]`` (learning signal; it weighs the filtered component ``ebar``).
    The augmented system (``M = C + 1`` components, the last one ``ebar``) is
    ``Ahat = [[A, 0], [A[z], kappa]]``, ``chat = [c; c[z]]``; it is never materialised:
    a row vector ``r`` times ``Ahat`` is ``(r[:C] + r[C] e_z) A`` and ``kappa r[C]``.
    Attributes after construction:
        delta ``[K, B, H]`` (``lam_s . chat_s``), rho ``[K, M, B, H]``, lam0 ``[M, B, H]``,
        Phi ``[M, M, B, H]`` (``Phi[m, n]``: weight of ``u_start[n]`` in ``u_end[m]``).
    """

    def __init__(self, A: Tensor, c: Tensor, kappa: float, L: Tensor):
        K, C, _, B, H = A.shape
        M = C + 1
        Lam = A.new_zeros(M + 1, M, B, H)       # row 0: lam, rows 1..M: rows of Phi(end, s)
        Lam[1:] = torch.eye(M, dtype=A.dtype, device=A.device).view(M, M, 1, 1)
        self.delta = A.new_empty(K, B, H)
        self.rho = A.new_empty(K, M, B, H)
        for s in range(K - 1, -1, -1):
            Lam[0, C] += L[s]
            red = Lam[:, :C].clone()                     # r[:C] + r[C] e_z
            red[:, C - 1] += Lam[:, C]
            dots = (red * c[s].unsqueeze(0)).sum(1)       # r . chat_s  [M+1, B, H]
            self.delta[s] = dots[0]
            self.rho[s] = dots[1:]
            new = torch.empty_like(Lam)
            torch.sum(red.unsqueeze(2) * A[s].unsqueeze(0), 1, out=new[:, :C])
            torch.mul(Lam[:, C], kappa, out=new[:, C])
            Lam = new
        self.lam0 = Lam[0]
        self.Phi = Lam[1:]


class SynapseTrace:
    """Per-synapse trace ``u [C+1, B, n_pre, H]`` of one weight ``[H, n_pre]`` and its gradient.

    ``step_chunk(adj, q)`` advances over one chunk with presynaptic signal ``q [K, B, n_pre]``
    and adds the chunk's contribution to the gradient. Sparse presynaptic activity (spikes;
    density below ``sparse_below``) is consumed as a sparse CSR event matrix: each event adds
    one ``[H]`` row to each trace component and to the gradient, so the synapse-level work
    per chunk is proportional to the number of presynaptic spikes, not ``K * B * n_pre * H``.
    """

    sparse_below = 0.1

    def __init__(self, B: int, H: int, M: int, n_pre: int, dtype, device):
        self.B, self.H, self.M, self.n_pre = B, H, M, n_pre
        self.u = None  # zero until the first chunk (lazy)
        self._spare = None
        self.grad_t = torch.zeros(n_pre, H, dtype=dtype, device=device)

    @property
    def grad(self) -> Tensor:
        """Accumulated gradient ``[H, n_pre]`` (the weight's layout)."""
        return self.grad_t.t()

    @staticmethod
    def nbytes(B: int, H: int, M: int, n_pre: int, itemsize: int) -> int:
        """Peak bytes: the trace plus one temporary of the same size during the update."""
        return 2 * M * B * H * n_pre * itemsize

    def step_chunk(self, adj: ChunkAdjoint, q: Tensor) -> None:
        """Advance over one chunk with presynaptic signal ``q [K, B, n_pre]``."""
        K, B, n = q.shape
        H, M = self.H, self.M
        u = self.u
        if u is not None:
            # contribution of the trace carried into the chunk: sum_{b,m} lam0[m,b,i] u[b,j,m,i]
            for m in range(M):
                for b in range(B):
                    self.grad_t.addcmul_(u[m, b], adj.lam0[m, b])
            # carry the trace over the chunk: u[m] <- sum_k Phi[m, k] u[k] (per neuron);
            # e does not depend on ebar (Phi[m, C] = 0 for m < C)
            new = self._spare if self._spare is not None else torch.empty_like(u)
            for m in range(M):
                torch.mul(u[0], adj.Phi[m, 0].unsqueeze(1), out=new[m])
                for k in range(1, M if m == M - 1 else M - 1):
                    new[m].addcmul_(u[k], adj.Phi[m, k].unsqueeze(1))
            self._spare, u = u, new  # double buffer: no fresh 2x trace allocation per chunk
        else:
            u = q.new_zeros(M, B, n, H)
        if q.numel() and (q != 0).sum() < self.sparse_below * q.numel():
            self._scatter(adj, q, u)
        else:
            # dense presynaptic activity: two GEMMs over the chunk
            self.grad_t.addmm_(q.reshape(K * B, n).t(), adj.delta.reshape(K * B, H))
            qb = q.permute(1, 2, 0)  # [B, n, K]
            for m in range(M):
                u[m].baddbmm_(qb, adj.rho[:, m].transpose(0, 1))
        self.u = u

    def _scatter(self, adj: ChunkAdjoint, q: Tensor, u: Tensor) -> None:
        """Sparse presynaptic events: CSR [rows, K*B] @ dense rows ``[K*B, H]``."""
        K, B, n = q.shape
        H, M = self.H, self.M
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # trace: rows (b, j), columns (s, b); nonzero of [B, n, K] comes sorted by row
            b, j, s = torch.nonzero(q.permute(1, 2, 0), as_tuple=True)
            vals = q[s, b, j]
            a = _csr_matrix(b * n + j, s * B + b, vals, B * n, K * B)
            uf = u.view(M, B * n, H)
            for m in range(M):
                uf[m].addmm_(a, adj.rho[:, m].reshape(K * B, H))
            # gradient: rows j, columns (s, b)
            j, s, b = torch.nonzero(q.permute(2, 0, 1), as_tuple=True)
            a = _csr_matrix(j, s * B + b, q[s, b, j], n, K * B)
            self.grad_t.addmm_(a, adj.delta.reshape(K * B, H))


def _csr_matrix(rows: Tensor, cols: Tensor, vals: Tensor, n_rows: int, n_cols: int) -> Tensor:
    """CSR ``[n_rows, n_cols]`` from entries sorted by row."""
    crow = torch.zeros(n_rows + 1, dtype=torch.int64, device=rows.device)
    crow[1:] = torch.bincount(rows, minlength=n_rows).cumsum(0)
    return torch.sparse_csr_tensor(crow, cols, vals, (n_rows, n_cols))
