"""Fused multi-step LIF/ALIF layer: a whole chunk in one autograd node.

The forward pass loops over time without autograd and keeps only the output spikes, in
binary form (:class:`~.bits.SpikeStore`, 1 byte or 1 bit each; the next layer and the
readout keep the same tensor), plus the compact index of a sparse input. Given the spikes,
the membrane is a deterministic function of the inputs, so the backward pass first replays
it from the initial state to find each block's start state (``block`` steps per block),
then walks the blocks in reverse; per block it recomputes the input current (one matmul,
or the sparse kernel), the recurrent current (one matmul over the block's stored spikes)
and the membrane trace (elementwise), then runs the hand-written reverse recursion, which is
exactly the chain rule of :meth:`LIFLayer.dynamics` (surrogate, reset and adaptation
terms, recurrent weights), and accumulates the weight gradients with one matmul per
block. The forward ops are the ones of ``step`` (:func:`.neurons.lif_membrane`, compiled
on CPU by :mod:`.lif_numba`) in the same order, so spikes and membranes are bit-identical
to looping ``step``. Only layers whose ``kernel_spec()`` is not None run here.

Tensors are time-major: inputs ``[T, B, n_in]``, spikes ``[T, B, H]``, states ``[B, H]``.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ...hardware.bits import SpikeStore
from ...hardware.compiled import available, kernel_buffer
from ...hardware.sparse import SparseIndex, choose_mode
from . import lif_numba, lif_sparse_numba
from .layer_input import LayerInput
from .neurons import LIFSpec
from .readout import leaky_scan, readout_grads, spike_current
from .surrogates import SURROGATE_GRADS

DEFAULT_BLOCK = 64  # steps per block: bounds backward temporaries to ~10 x [64, B, H] floats


def _membrane(spec: LIFSpec, current, w_rec: Tensor | None, v: Tensor, a: Tensor | None,
              z: Tensor, spikes_out: Tensor, block: int, starts: list | None = None,
              kept: tuple | None = None, cut: float | None = None,
              z_out: Tensor | None = None):
    """Forward loop (no autograd). ``current(t0, t1)`` gives the input current of a block
    ``[t1 - t0, B, H]`` (computed a block at a time to bound memory). Writes spikes (bool)
    into ``spikes_out [T, B, H]``; returns the final ``(v, a, z)``. On CPU the steps of a
    block run in one compiled call (:mod:`.lif_numba`) and, given a list ``starts``, the
    state ``(v, a)`` at the start of each block after the first is appended to it; given
    ``kept = (vs, thrs, sg)`` (``[T, B, H]`` tensors or None) the kernel also writes the
    membrane, threshold and surrogate derivative (zero where ``|x| > cut``) of every step;
    given ``z_out [T, B, H]`` (float) the compiled kernel also writes the spikes into it as
    0/1 floats (no separate conversion pass)."""
    T = spikes_out.shape[0]
    if available(v, w_rec):
        wt = w_rec.detach().t().contiguous() if spec.recurrent else None
        v, z = v.detach().clone(), z.detach().clone()
        a = a.detach().clone() if spec.alif else None
        _, scale = SURROGATE_GRADS[spec.surrogate]
        for t0 in range(0, T, block):
            t1 = min(t0 + block, T)
            if starts is not None and t0 > 0:
                starts.append((v.clone(), a.clone() if spec.alif else None))
            outs = {} if kept is None else dict(
                out_v=None if kept[0] is None else kept[0][t0:t1],
                out_thr=None if kept[1] is None else kept[1][t0:t1],
                out_sg=kept[2][t0:t1], surrogate=spec.surrogate, scale=scale, cut=cut)
            if z_out is not None:
                outs["out_z"] = z_out[t0:t1]
            lif_numba.membrane_block(current(t0, t1), wt, v, a, z, spikes_out[t0:t1],
                                     **outs, **spec.kernel_args())
        return v, a, z
    wt = w_rec.t() if spec.recurrent else None
    thr0 = spec.threshold
    i_blk: list[Tensor] = []
    for t in range(T):
        if t % block == 0:
            i_blk = current(t, min(t + block, T)).unbind(0)
        i_t = i_blk[t % block]
        cur = i_t + z @ wt if wt is not None else i_t
        v, a, thr = spec.membrane(v, a, z, cur)
        if thr0 > 0:  # (v - thr) / thr0 > 0  <=>  v > thr  (IEEE: a - b == 0 only if a == b)
            torch.gt(v, thr, out=spikes_out[t])
        else:
            torch.gt((v - thr) / thr0, 0, out=spikes_out[t])
        z = spikes_out[t].to(v.dtype)
    return v, a, z


def surrogate_slope(spec: LIFSpec, vs: Tensor, thrs, cut: float | None) -> Tensor:
    """Eager surrogate derivative ``d z / d v`` of membranes ``vs [n, B, H]`` (thresholds
    ``thrs``, a tensor for ALIF), zero where ``|v - thr| / threshold > cut``."""
    fn, scale = SURROGATE_GRADS[spec.surrogate]
    thr0 = spec.threshold
    xarg = (vs - (thrs if spec.alif else thr0)) / thr0
    s = fn(xarg, scale) / thr0
    if cut is not None:
        s = s.masked_fill(xarg.abs() > cut, 0.0)
    return s


class _FusedLayer(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w_in, w_rec, v0, a0, z0, w_out, b_out, o0, spec: LIFSpec,
                inp: LayerInput, storage: str, block: int, B: int, T: int, holder: dict,
                keep: bool = False, cut: float | None = None, kappa: float = 0.0):
        dtype = w_in.dtype
        inp.B = B
        if inp.kind == "dense" and inp.mode == "sparse":
            # index the input once; backward slices it per block instead of re-scanning
            inp.cached = inp.index(0, T, x)
        H = w_in.shape[0]
        nb = available(w_in, w_rec, v0)
        # [T, B, H] stores the compiled kernels fill (pooled: no fresh pages each step)
        new = (lambda dt: kernel_buffer((T, B, H), dt)) if nb else (  # noqa: E731
            lambda dt: torch.empty(T, B, H, dtype=dt, device=w_in.device))
        spikes = new(torch.bool)
        grad = any(ctx.needs_input_grad)
        # keep=True: the forward kernel writes what backward needs of the membrane (surrogate
        # derivative; membrane for reset "zero", threshold for ALIF), so backward replays
        # nothing. Otherwise, with bool/float spike storage, keep each block's start state
        # (1/16 of the bool spikes' bytes at block 64) so backward replays the membrane once;
        # "bits" storage means least memory: backward replays from (v0, a0) instead
        keep = bool(keep and grad and nb)
        kept = None
        if keep:
            kept = (new(dtype) if spec.reset != "subtract" else None,
                    new(dtype) if spec.alif else None, new(dtype))
        starts = [] if (storage != "bits" and grad and not keep) else None
        # on the compiled path the kernel writes the float spikes the layer returns; with the
        # readout in this node (w_out given) the layer returns its outputs instead
        ro = w_out is not None
        z_all = new(dtype) if nb and not ro else None
        v, a, z = _membrane(spec, lambda t0, t1: inp.current(t0, t1, x, w_in, B),
                            w_rec, v0, a0, z0, spikes, block, starts, kept, cut, z_all)
        ctx.n_starts = len(starts) if starts else 0
        ck_t = [t for st in (starts or []) for t in st if t is not None]
        store = SpikeStore(spikes, storage)
        # the forward's transposed weight copy and row pointer: not kept for backward
        inp._wt = inp._wt_key = inp._ptr = inp._ptr_of = None
        ctx.spec, ctx.inp, ctx.block, ctx.shape = spec, inp, block, (T, B, H)
        ctx.storage, ctx.cut, ctx.kappa, ctx.ro = storage, cut, kappa, ro
        ctx.kept = None if kept is None else tuple(k is not None for k in kept)
        kept_t = [k for k in (kept or ()) if k is not None]
        in_store = inp.store.tensor if inp.kind == "spikes" else None
        idx = inp.cached.tensors() if inp.cached is not None else []
        ctx.idx_shape = inp.cached.shape if inp.cached is not None else None
        inp.cached = None
        x_keep = x if inp.kind == "dense" else None  # binary inputs are kept in their store
        ctx.n_idx, ctx.n_ck = len(idx), len(ck_t)
        ctx.save_for_backward(x_keep, w_in, w_rec, z0, store.tensor, v0, a0, in_store, w_out,
                              *idx, *ck_t, *kept_t)
        # The consumer of these spikes (next layer, readout) saves this same tensor: counted once.
        holder["store"] = store
        if ro:  # o_t = kappa o_{t-1} + z_t W_out^T + b_out from the bool spikes; z_T for the state
            outs = leaky_scan(spike_current(spikes, w_out), o0, kappa, b_out)
            return (outs, v) + ((a,) if spec.alif else ()) + (z,)
        if z_all is None:
            z_all = spikes.to(dtype)
        return (z_all, v) + ((a,) if spec.alif else ())

    @staticmethod
    def backward(ctx, g_first, gv_T, *ga):
        x, w_in, w_rec, z0, st, v0, a0, in_st, w_out, *rest = ctx.saved_tensors
        idx = rest[:ctx.n_idx]
        ck_t = rest[ctx.n_idx:ctx.n_idx + ctx.n_ck]
        kept_t = list(rest[ctx.n_idx + ctx.n_ck:])
        kept = None
        if ctx.kept is not None:
            kept = tuple(kept_t.pop(0) if has else None for has in ctx.kept)
        spec, inp, K, cut = ctx.spec, ctx.inp, ctx.block, ctx.cut
        T, B, H = ctx.shape
        in_store = SpikeStore.wrap(in_st, inp.store.shape, inp.store.storage) if inp.kind == "spikes" else None
        inp = LayerInput(inp.kind, inp.mode, in_store, inp.sparse)
        inp.B = B
        if idx:
            inp.cached = SparseIndex.from_tensors(idx, ctx.idx_shape)
        store = SpikeStore.wrap(st, (T, B, H), ctx.storage)
        dt = w_in.dtype
        _, scale = SURROGATE_GRADS[spec.surrogate]
        beta, thr0, sub = spec.beta, spec.threshold, spec.reset == "subtract"
        need_x, need_win, need_wrec = ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[2]
        dev = w_in.device
        zeros = torch.zeros(B, H, dtype=dt, device=dev)
        g_wout = g_bout = g_o0 = None
        if ctx.ro:  # readout in this node: dL/dz_t = gu_t W_out, a block at a time
            *ga, gz_T = ga
            gu, g_wout, g_bout, g_o0 = readout_grads(
                g_first, store, w_out, ctx.kappa, ctx.needs_input_grad[6], ctx.needs_input_grad[7])
            gz_buf = torch.empty(K + 1, B, H, dtype=dt, device=dev)
        elif g_first is None:
            g_first = torch.zeros(T, B, H, dtype=dt, device=dev)

        def gz_rows(t0, t1):
            """dL/dz from outside this layer for steps ``t0:t1``, ``[t1 - t0, B, H]``."""
            if not ctx.ro:
                return g_first[t0:t1]
            g = torch.mm(gu[t0:t1].reshape(-1, gu.shape[-1]), w_out,
                         out=gz_buf[:t1 - t0].view(-1, H)).view(t1 - t0, B, H)
            if t1 == T and gz_T is not None:
                g[-1] += gz_T
            return g

        cv = gv_T.clone(memory_format=torch.contiguous_format) if gv_T is not None else zeros.clone()
        ca = (ga[0] if ga and ga[0] is not None else zeros) if spec.alif else None
        cz, cz_full = None, False
        g_win = torch.zeros_like(w_in) if need_win else None
        g_wrec = torch.zeros_like(w_rec) if (w_rec is not None and need_wrec) else None
        g_wrec_t = None  # transposed accumulator of the compiled scatter
        # the input weight gradient's transposed accumulator (sparse input, compiled scatter)
        g_win_t = (torch.zeros(w_in.shape[1], w_in.shape[0], dtype=dt)
                   if need_win and inp.mode == "sparse" and available(w_in) else None)
        g_x = torch.empty(T, B, w_in.shape[1], dtype=dt, device=dev) if need_x else None
        wt = w_rec.t() if spec.recurrent else None
        # LIF subtract: d v_t / d z_{t-1} = W_rec^T - theta I, folded into one matrix
        w_back = None
        if spec.recurrent:
            w_back = w_rec - thr0 * torch.eye(H, dtype=dt, device=dev) \
                if (sub and not spec.alif) else w_rec
        nblk = -(-T // K)
        gI_buf = torch.empty(min(K, T), B, H, dtype=dt, device=dev)  # one block's, reused

        use_nb = available(w_in, w_rec, v0)
        wt_c = w_rec.detach().t().contiguous() if (use_nb and spec.recurrent) else None
        z0_bin = bool(((z0 == 0) | (z0 == 1)).all())
        # sparse backward of a LIF (subtract) layer: compiled recursion over active neurons
        sparse_rec = use_nb and cut is not None and sub and not spec.alif
        if sparse_rec:
            cz = zeros.clone()
            P = cv @ w_back if w_back is not None else zeros.clone()
        # float previous spikes: only for the eager paths and the zero/ALIF terms
        need_zf = not use_nb or not sub or spec.alif

        def spikes_of(bi):
            """Bool spikes of block ``bi`` and of the steps before them (None if z0 is not
            binary) and, where needed, the latter as floats."""
            t0, t1 = bi * K, min((bi + 1) * K, T)
            zb = store.load_range(max(t0 - 1, 0), t1, torch.bool)
            own = zb if t0 == 0 else zb[1:]
            prev = zb[:-1] if t0 > 0 else (
                torch.cat([z0.detach().unsqueeze(0) != 0, zb[:-1]]) if z0_bin else None)
            zf = None
            if need_zf or prev is None:
                zf = zb.to(dt)
                zf = torch.cat([z0.detach().unsqueeze(0), zf[:-1]]) if t0 == 0 else zf[:-1]
            z_first = z0.detach() if t0 == 0 else zb[0].to(dt)
            return t0, t1, own, prev, zf, z_first

        def replay(bi, v, a, keep=True):
            """Membrane, threshold and surrogate derivative over block ``bi`` from its start
            state ``[n, B, H]`` each (what is not needed is None), and the end state; the
            forward's ops in the forward's order (a closed-form decay-matrix solve was tried:
            its rounding, amplified by the surrogate slope, broke 1e-5 agreement)."""
            t0, t1, own, _, zf, z_first = spikes_of(bi)
            cur = inp.current(t0, t1, x, w_in, B)
            n = t1 - t0
            if use_nb:
                v, z = v.clone(), z_first.clone()
                a = a.clone() if spec.alif else None
                sg = torch.empty(n, B, H, dtype=dt) if keep else None
                vs, thrs = lif_numba.membrane_block(
                    cur, wt_c, v, a, z, own, replay=True, keep_v=keep and not sub,
                    keep_thr=keep and spec.alif, out_sg=sg, surrogate=spec.surrogate,
                    scale=scale, cut=cut, **spec.kernel_args())
                return vs, thrs, sg, v, a
            if wt is not None:
                cur = cur + zf @ wt
            vs = torch.empty(n, B, H, dtype=dt, device=dev)
            thrs = torch.empty(n, B, H, dtype=dt, device=dev) if spec.alif else None
            for k in range(n):
                v, a, thr = spec.membrane(v, a, zf[k], cur[k])
                vs[k] = v
                if spec.alif:
                    thrs[k] = thr
            sg = surrogate_slope(spec, vs, thrs, cut) if keep else None
            return vs, thrs, sg, v, a

        # block-start states: replay the membrane from (v0, a0) with the stored spikes
        ck = [(v0.detach(), a0.detach() if spec.alif else None)]
        per = 2 if spec.alif else 1
        for i in range(ctx.n_starts):
            ck.append((ck_t[per * i], ck_t[per * i + 1] if spec.alif else None))
        if kept is None:
            for bi in range(len(ck) - 1, nblk - 1):
                *_, v_end, a_end = replay(bi, *ck[-1], keep=False)
                ck.append((v_end, a_end))
        for bi in reversed(range(nblk)):
            t0, t1, _, zb_prev, zprev, _ = spikes_of(bi)
            n = t1 - t0
            if kept is not None:
                vs = kept[0][t0:t1] if kept[0] is not None else None
                thrs = kept[1][t0:t1] if kept[1] is not None else None
                s = kept[2][t0:t1]
                v_start = (v0.detach() if t0 == 0 else kept[0][t0 - 1]) if not sub else None
            else:
                vs, thrs, s, _, _ = replay(bi, *ck[bi])
                v_start = ck[bi][0]
            if sub:
                m = None
                nterm = -thrs if spec.alif else None
            else:
                vprev = torch.cat([v_start.unsqueeze(0), vs[:-1]])
                m = beta * (1.0 - zprev)
                nterm = -beta * vprev
            gI = gI_buf[:n]  # dL/dI of the block (written in full below)
            # the outside gradient of steps t0 - 1 .. t1 - 1 (step t0 - 1: the cross-block addmm)
            off = 1 if t0 > 0 else 0
            gzb = gz_rows(t0 - off, t1)
            if sparse_rec:
                lif_sparse_numba.lif_backward_sparse(gzb[off:], s, w_back, cv, cz, P, gI, beta, thr0)
            else:
                for k in range(n - 1, -1, -1):
                    if cz_full:  # cz already holds gz_all[t] + (grad from step t + 1)
                        gz, cz_full = cz, False
                    else:
                        gz = gzb[off + k] if cz is None else gzb[off + k] + cz
                    if spec.alif:
                        gzs = gz * s[k]
                        gv = torch.add(gzs, cv, out=gI[k])
                        gA = -gzs - gv * zprev[k] if sub else -gzs
                        gav = spec.adapt * gA + ca
                        ca = spec.rho * gav
                        cz = gav + gv * nterm[k]
                        if w_back is not None:
                            cz = cz + gv @ w_back
                    else:
                        gv = torch.addcmul(cv, gz, s[k], out=gI[k])
                        if w_back is not None and nterm is None and t0 + k > 0:
                            cz, cz_full = torch.addmm(gzb[off + k - 1], gv, w_back), True
                        elif w_back is not None:
                            cz = gv @ w_back
                            if nterm is not None:
                                cz = torch.addcmul(cz, gv, nterm[k])
                        else:
                            cz = -thr0 * gv if sub else gv * nterm[k]
                    cv = beta * gv if m is None else gv * m[k]
            if g_wrec is not None and use_nb and zb_prev is not None:
                g_wrec_t = torch.zeros_like(w_rec) if g_wrec_t is None else g_wrec_t
                lif_numba.recurrent_grad(g_wrec_t, zb_prev, gI)
            elif g_wrec is not None:
                g_wrec += gI.reshape(-1, H).t() @ zprev.reshape(-1, H)
            if g_win is not None:
                gw = inp.grad_weight(t0, t1, x, gI, g_win_t)
                if gw is not None:
                    g_win += gw
            if g_x is not None:
                g_x[t0:t1] = gI @ w_in
        if g_wrec_t is not None:
            g_wrec += g_wrec_t.t()
        if g_win_t is not None:
            g_win += g_win_t.t()
        ga0 = ca if spec.alif else None
        gz0 = cz if cz is not None else zeros
        return (g_x, g_win, g_wrec, cv, ga0, gz0, g_wout, g_bout, g_o0) + (None,) * 10


def fused_layer(layer, spec: LIFSpec, h, x, *, in_store: SpikeStore | None = None, sparse=None,
                mode: str = "auto", storage: str = "bool", block: int = DEFAULT_BLOCK,
                keep_membrane: bool = False, sparse_backward: float | None = None,
                readout: tuple | None = None):
    """Run ``layer`` (with ``spec = layer.kernel_spec()``) over a chunk in one autograd node.

    ``x [T, B, n_in]`` dense input (or None with ``sparse`` a SparseSpikes train);
    ``in_store`` marks ``x`` as binary spikes of the layer below, kept in that store.
    ``keep_membrane``: keep the surrogate derivative of every step (``T B H`` floats)
    instead of replaying the membrane in backward (compiled path; same gradients).
    ``sparse_backward``: zero the surrogate derivative where ``|v - thr| / threshold``
    exceeds it (:mod:`.sparse_backward`); None keeps the exact gradient.
    Returns ``(h_T, z_all [T, B, H], store)`` where ``store`` holds ``z_all`` in binary form.
    ``readout = (w_out [C, H], b_out [C] or None, o0 [B, C], kappa)``: the leaky readout
    ``o_t = kappa o_{t-1} + z_t W_out^T + b_out`` runs in the same node (from the bool spikes,
    its gradient into the layer a block at a time) and ``o [T, B, C]`` is returned in place
    of ``z_all``.
    """
    if sparse is not None:
        T, B = sparse.shape[0], sparse.shape[1]
        kind, m = "sparse", ("dense" if mode == "dense" else "sparse")
    else:
        T, B = x.shape[0], x.shape[1]
        kind = "spikes" if in_store is not None else "dense"
        m = choose_mode(x, mode)
    inp = LayerInput(kind, m, store=in_store, sparse=sparse)
    if kind == "sparse" and m == "dense":
        x, inp = sparse.dense(dtype=layer.w_in.dtype), LayerInput("dense", "dense")
    v0, z0 = h[0], h[-1]
    a0 = h[1] if spec.alif else None
    holder: dict = {}
    cut = None if sparse_backward is None else float(sparse_backward)
    w_out, b_out, o0, kappa = readout if readout is not None else (None, None, None, 0.0)
    outs = _FusedLayer.apply(x, layer.w_in, layer.w_rec, v0, a0, z0, w_out, b_out, o0, spec, inp,
                             storage, block, B, T, holder, bool(keep_membrane), cut, float(kappa))
    z_T = outs[-1] if readout is not None else outs[0][-1]
    h_new = (outs[1], outs[2], z_T) if spec.alif else (outs[1], z_T)
    return h_new, outs[0], holder["store"]
