"""Leaky readout over a chunk in one autograd node: ``o_t = kappa o_{t-1} + z_t W^T + b``.

The binary input spikes ``z [T, B, H]`` are kept only in their binary store (shared with
the layer that made them); the time scans run compiled on CPU (:mod:`.lif_kernels`).
"""
from __future__ import annotations

import torch
from torch import Tensor

from . import lif_kernels
from .bits import SpikeStore


class _LeakyReadout(torch.autograd.Function):
    """``o_t = kappa o_{t-1} + z_t W^T + b`` over a chunk; keeps ``z`` only in binary form."""

    @staticmethod
    def forward(ctx, z_all, w, b, o0, kappa: float, st, shape, storage):
        u = z_all @ w.t()
        if lif_kernels.available(u, o0, b):
            outs = lif_kernels.leaky_forward(u, b, o0, kappa)
        else:
            outs = torch.empty(u.shape, dtype=u.dtype, device=u.device)
            o = o0
            for t, u_t in enumerate(u.unbind(0)):
                o = torch.add(kappa * o + u_t, b, out=outs[t])
        ctx.kappa, ctx.shape, ctx.storage = kappa, shape, storage
        ctx.save_for_backward(w, st)
        return outs

    @staticmethod
    def backward(ctx, go):
        w, st = ctx.saved_tensors
        kappa = ctx.kappa
        if lif_kernels.available(go):
            gu = lif_kernels.leaky_backward(go, kappa)
            c = kappa * gu[0]
        else:
            gu = torch.empty_like(go)
            c = None
            for t in range(go.shape[0] - 1, -1, -1):
                if c is None:
                    gu[t] = go[t]
                else:
                    torch.add(go[t], c, out=gu[t])
                c = kappa * gu[t]
        gz = gu @ w if ctx.needs_input_grad[0] else None
        gw = gb = None
        if ctx.needs_input_grad[1]:
            store = SpikeStore.wrap(st, ctx.shape, ctx.storage)
            gw = w.new_zeros(w.shape)
            T, K = go.shape[0], 256
            for t0 in range(0, T, K):  # a block at a time: no full-length float copy of z
                z = store.load_range(t0, min(t0 + K, T), go.dtype)
                gw += gu[t0:t0 + K].reshape(-1, gu.shape[-1]).t() @ z.reshape(-1, z.shape[-1])
        if ctx.needs_input_grad[2]:
            gb = gu.sum((0, 1))
        return gz, gw, gb, c, None, None, None, None


def leaky_readout(z_all: Tensor, store: SpikeStore, w: Tensor, b: Tensor, o0: Tensor,
                  kappa: float) -> Tensor:
    """Leaky readout over a chunk: ``z_all [T, B, H] -> o [T, B, C]`` with
    ``o_t = kappa o_{t-1} + z_t W^T + b``; ``store`` holds ``z_all`` in binary form."""
    return _LeakyReadout.apply(z_all, w, b, o0, kappa, store.tensor, store.shape, store.storage)
