"""Eager e-prop: the same gradients as the compiled path, in plain PyTorch ops on any device.

:class:`.strategy.EProp` runs this path when the model is not on the CPU (the compiled trace
kernels are CPU only) or when ``SPIKETRAIN_KERNELS=torch`` is set
(``spiketrain.hardware.compiled.ENV``, the switch of the compiled neuron kernels too).
Per chunk of ``K`` steps: each layer runs forward with its own ``dynamics`` (no autograd
graph), the per-neuron Jacobians come from :func:`.jacobian.neuron_jacobians`, the readout
and per-step losses give the learning signals, and per layer one backward sweep over the
chunk (:class:`.eager_traces.ChunkAdjoint`) plus two matrix products per weight
(:class:`.eager_traces.SynapseTrace`) add the chunk's gradient. Every layer keeps the full
``C + 1`` component trace (no factorised trace, no compiled LIF/ALIF kernel).
"""
from __future__ import annotations

import torch
from torch import Tensor

from ...hardware import compiled
from ...models.snn.readout import leaky_scan
from .. import inputs as inp
from .eager_traces import ChunkAdjoint, SynapseTrace
from .jacobian import check_diagonal, neuron_jacobians


def wanted(device: torch.device) -> bool:
    """True when e-prop runs eagerly: the backend owning ``device`` runs no compiled kernels
    (anything but the CPU), ``SPIKETRAIN_KERNELS=torch`` is set, or numba is missing."""
    return not (compiled.enabled() and compiled.compiled_on(torch.device(device)))


def need_bytes(model, B: int, n_in: int, itemsize: int, chunk: int) -> int:
    """Bytes the eager traces ``[C+1, B, n_pre, H]`` and one chunk's buffers hold (flat in T)."""
    total, n_pre, K = 0, n_in, chunk
    for layer in model.layers:
        H, C = layer.w_in.shape[0], len(layer.state_names)
        M = C + 1
        pres = [n_pre] + ([H] if getattr(layer, "w_rec", None) is not None else [])
        total += sum(SynapseTrace.nbytes(B, H, M, n, itemsize) + H * n * itemsize for n in pres)
        # chunk buffers: inputs; states, Jacobians A and c, their vjp results, rho (C+1);
        # current, spikes, previous spikes, delta, learning signal
        total += K * B * (n_pre + H * (C * C + 4 * C + 6)) * itemsize
        n_pre = H
    return total


def _forward(layer, h, q: Tensor):
    """Run one layer over a chunk without autograd.

    Args: h (state components, each ``[B, H]``), q ``[K, B, n_pre]`` (presynaptic signal).
    Returns the new state and records ``h_prev`` (list of ``[K, B, H]``), ``cur``, ``z`` and,
    with recurrent weights, ``z_prev`` (each ``[K, B, H]``).
    """
    rec_w = getattr(layer, "w_rec", None) is not None
    with torch.no_grad():
        i_in = layer.input_current(q)
        h_prev = [[] for _ in h]
        curs, zs, z_prev = [], [], []
        for i_t in i_in.unbind(0):
            if rec_w:
                z_prev.append(h[-1])
            cur = i_t + layer.recurrent_current(h[-1]) if rec_w else i_t
            for lst, comp in zip(h_prev, h):
                lst.append(comp)
            curs.append(cur)
            h = tuple(layer.dynamics(h, cur))
            zs.append(h[-1])
        rec = {"h_prev": [torch.stack(l) for l in h_prev], "cur": torch.stack(curs),
               "z": torch.stack(zs)}
        if rec_w:
            rec["z_prev"] = torch.stack(z_prev)
    return h, rec


def run(strat, model, inputs, state, step_loss, targets):
    """e-prop over ``inputs [T, B, n_in]`` for ``strat`` (an :class:`.strategy.EProp`; the
    online loss, model and targets are already checked); returns ``OnlineResult(loss,
    readout)`` (the loss's backward hands out the gradients) and fills ``strat.report`` like
    the compiled path."""
    from ..base import OnlineResult
    from .strategy import (_EPropLoss, _check_structure, _param_grads,  # strategy imports this
                           readout_reducer)

    if strat.factorise is True:
        raise ValueError("eprop factorise=True needs the compiled CPU trace kernels, which do "
                         "not run here (model not on the CPU, or SPIKETRAIN_KERNELS=torch); "
                         "use factorise='auto' or False, or move the model to the CPU and "
                         "unset SPIKETRAIN_KERNELS")
    T, B = int(inputs.shape[0]), int(inputs.shape[1])
    dtype, device = model.w_out.dtype, model.w_out.device
    K = max(1, min(strat.chunk, T))
    need = need_bytes(model, B, int(inputs.shape[2]), torch.finfo(dtype).bits // 8, K)
    strat.check_budget({"device": need})
    if state is None:
        state = model.init_state(B)
    *hs, o = state
    hs = [tuple(c.detach() for c in h) for h in hs]
    o = o.detach()
    layers = list(model.layers)
    kappa = float(model.kappa)
    traces = []
    for layer, h in zip(layers, hs):
        H, C = h[-1].shape[-1], len(h)
        ts = [SynapseTrace(B, H, C + 1, layer.w_in.shape[1], dtype, device)]
        if getattr(layer, "w_rec", None) is not None:
            ts.append(SynapseTrace(B, H, C + 1, H, dtype, device))
        traces.append(ts)
    w_out = model.w_out.detach()
    g_out = torch.zeros_like(w_out)
    g_b = torch.zeros_like(model.b_out)
    zbar = torch.zeros_like(hs[-1][-1])
    mbar = 0.0
    total = o.new_zeros(())
    reducer = readout_reducer(model)
    key = (id(model), tuple(id(l) for l in layers), dtype, "eager")
    verify = strat.check and key not in strat._verified
    for t0 in range(0, T, strat.chunk):
        t1 = min(T, t0 + strat.chunk)
        x = inp.segment(inputs, t0, t1, dtype).to(device=device, dtype=dtype)
        y = targets[t0:t1]
        if verify:
            with torch.no_grad():
                _, o_ref = model.step((*hs, o), x[0])
        # ---- forward, layer by layer over the chunk (no autograd graph)
        fwd, q = [], x
        for k, layer in enumerate(layers):
            hs[k], rec = _forward(layer, hs[k], q)
            fwd.append((q, rec))
            q = rec["z"]
        z_top = q
        oc = model.readout_chunk(o, z_top)  # [K, B, C], the model's own readout
        o = oc[-1]
        if verify:
            _check_structure(model, oc[0], o_ref)
        # ---- per-step losses and their gradient [K, B, n_out] wrt the readout
        loss_c, g = strat._losses(oc, y, step_loss, verify)
        total = total + loss_c
        if reducer is not None:
            reducer.update(oc)
        # ---- readout (exact): o_t = sum_s kappa^{t-s} (W z_s + b)
        zb = leaky_scan(z_top, zbar, kappa)
        zbar = zb[-1]
        mb = []
        for _ in range(z_top.shape[0]):
            mbar = kappa * mbar + 1.0
            mb.append(mbar)
        g_out.addmm_(g.reshape(-1, g.shape[-1]).t(), zb.reshape(-1, zbar.shape[-1]))
        g_b += (g.sum(1) * g.new_tensor(mb).unsqueeze(1)).sum(0)
        # ---- learning signals, top layer down
        L = g @ w_out
        for k in range(len(layers) - 1, -1, -1):
            q, rec = fwd[k]
            A, c = neuron_jacobians(layers[k], rec["h_prev"], rec["cur"])
            if verify:
                check_diagonal(layers[k], rec["h_prev"], rec["cur"], A, c)
            adj = ChunkAdjoint(A, c, kappa, L)
            traces[k][0].step_chunk(adj, q)
            if len(traces[k]) > 1:
                traces[k][1].step_chunk(adj, rec["z_prev"])
            if k > 0:  # same-step path z^{k-1}_t -> I^k_t -> z^k_t
                L = (L * c[:, -1]) @ layers[k].w_in.detach()
            del A, c, adj
        del fwd, L, g, x, z_top, q
        if verify:
            strat._verified.add(key)
        verify = False
    params, grads = _param_grads(model, layers, traces, g_out, g_b)
    held = sum((0 if t.u is None else t.u.nbytes) + t.grad_t.nbytes
               + (0 if t._spare is None else t._spare.nbytes) for ts in traces for t in ts)
    strat.report.steps = T
    strat.report.peak_bytes = {"device": need}
    strat.report.notes = {"chunk": strat.chunk,
                          "exact": len(layers) == 1 and len(traces[0]) == 1,
                          "factorised": [False] * len(layers),
                          "trace_bytes": held,
                          "compiled": [False] * len(layers),
                          "eager": True}
    return OnlineResult(_EPropLoss.apply(grads, total, *params),
                        None if reducer is None else reducer.value())
