"""Eligibility traces carried forward in time, evaluated one chunk of ``K`` steps at a time.

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

import torch
from torch import Tensor


def augment(A: Tensor, c: Tensor, kappa: float) -> tuple[Tensor, Tensor]:
    """Add the readout-filtered spike trace to the per-neuron system.

    ``A [K, C, C, B, H], c [K, C, B, H] -> Ahat [K, C+1, C+1, B, H], chat [K, C+1, B, H]``
    with ``ebar_t = kappa ebar_{t-1} + z-row of (A_t e_{t-1} + c_t q_t)``.
    """
    K, C, _, B, H = A.shape
    Ah = A.new_zeros(K, C + 1, C + 1, B, H)
    Ah[:, :C, :C] = A
    Ah[:, C, :C] = A[:, C - 1]
    Ah[:, C, C] = kappa
    ch = torch.cat([c, c[:, C - 1:C]], 1)
    return Ah, ch


class ChunkAdjoint:
    """Backward sweep over one chunk for one layer (shared by all its weight matrices).

    Args:
        Ahat ``[K, M, M, B, H]``, chat ``[K, M, B, H]`` (``M = C + 1``), L ``[K, B, H]``
        (learning signal; it weighs the filtered component ``M - 1``).
    Attributes after construction:
        delta ``[K, B, H]`` (``lam_s . chat_s``), rho ``[K, M, B, H]``, lam0 ``[M, B, H]``,
        Phi ``[M, M, B, H]`` (``Phi[m, n]``: weight of ``u_start[n]`` in ``u_end[m]``).
    """

    def __init__(self, Ahat: Tensor, chat: Tensor, L: Tensor):
        K, M, _, B, H = Ahat.shape
        Lam = Ahat.new_zeros(M + 1, M, B, H)       # row 0: lam, rows 1..M: rows of Phi(end, s)
        Lam[1:] = torch.eye(M, dtype=Ahat.dtype, device=Ahat.device).view(M, M, 1, 1)
        self.delta = Ahat.new_empty(K, B, H)
        self.rho = Ahat.new_empty(K, M, B, H)
        for s in range(K - 1, -1, -1):
            Lam[0, M - 1] += L[s]
            ch = chat[s]
            self.delta[s] = (Lam[0] * ch).sum(0)
            self.rho[s] = (Lam[1:] * ch.unsqueeze(0)).sum(1)
            # row vectors times Ahat_s: Lam[r, n] <- sum_k Lam[r, k] Ahat_s[k, n]
            Lam = (Lam.unsqueeze(2) * Ahat[s].unsqueeze(0)).sum(1)
        self.lam0 = Lam[0]
        self.Phi = Lam[1:]


class SynapseTrace:
    """Per-synapse trace ``u [B, H, C+1, n_pre]`` of one weight ``[H, n_pre]`` and its gradient.

    ``step_chunk(adj, q)`` advances over one chunk with presynaptic signal ``q [K, B, n_pre]``
    and adds the chunk's contribution to ``grad [H, n_pre]``.
    """

    def __init__(self, B: int, H: int, M: int, n_pre: int, dtype, device):
        self.B, self.H, self.M, self.n_pre = B, H, M, n_pre
        self.u = None  # zero until the first presynaptic activity (lazy)
        self.grad = torch.zeros(H, n_pre, dtype=dtype, device=device)

    @staticmethod
    def nbytes(B: int, H: int, M: int, n_pre: int, itemsize: int) -> int:
        """Peak bytes: the trace plus one temporary of the same size during the update."""
        return 2 * B * H * M * n_pre * itemsize

    def step_chunk(self, adj: ChunkAdjoint, q: Tensor) -> None:
        K, B, n = q.shape
        H, M = self.H, self.M
        flat_q = q.reshape(K * B, n)
        # contribution of this chunk's own presynaptic activity: sum_{s,b} delta_s[b,i] q_s[b,j]
        self.grad.addmm_(adj.delta.reshape(K * B, H).t(), flat_q)
        if self.u is not None:
            # contribution of the trace carried into the chunk: sum_b lam0[b,i,m] u[b,i,m,j]
            lam = adj.lam0.permute(1, 2, 0).reshape(B * H, 1, M)
            self.grad += torch.bmm(lam, self.u.view(B * H, M, n)).view(B, H, n).sum(0)
            phi = adj.Phi.permute(2, 3, 0, 1).reshape(B * H, M, M)
            self.u = torch.bmm(phi, self.u.view(B * H, M, n)).view(B, H * M, n)
        else:
            self.u = q.new_zeros(B, H * M, n)
        # u_end += sum_s rho_s[b, i, m] q_s[b, j]
        rho = adj.rho.permute(2, 3, 1, 0).reshape(B, H * M, K)
        self.u.baddbmm_(rho, q.transpose(0, 1))
        self.u = self.u.view(B, H, M, n)
