"""NIR (Neuromorphic Intermediate Representation) export and import of RSNNs.

Export (:func:`to_nir`, :func:`export_nir`): ``Input -> Linear(w_in) -> LIF [<-> Linear(w_rec)]
-> ... -> Affine(w_out, b_out) -> LI -> Output``. NIR nodes are continuous time (seconds):
a decay ``beta`` at step ``dt`` becomes ``tau = -dt / ln(beta)`` and ``r`` makes the
zero-order-hold input coefficient ``(1 - beta) r`` equal to the model's (1 for LIF/ALIF and
the readout, ``1 - alpha`` folded into adLIF's own update). NIR 1.0 has no adaptive neuron:
ALIF and adLIF layers are written as ``LIF`` nodes whose metadata carries the adaptation
(``spiketrain_neuron``, ``tau_adapt``, ``adapt`` / ``a``, ``b``) and the reset
(``spiketrain_reset``); another library reading the file sees their LIF part only.

Import (:func:`from_nir`): a chain of the supported nodes (:data:`SUPPORTED`) becomes a
trainable :class:`~.snn.rsnn.RSNN` with per-neuron learnable time constants
(``lif_learn``; ``alif_learn`` / ``adlif`` from spiketrain's metadata). Any other node is
refused by name and type. Graphs from other libraries are discrete-time simulations of
their own: pass the step they use (``dt`` in ms: snnTorch 0.1) and ``discretisation``
(``"euler"``: ``beta = 1 - dt / tau``, input ``dt r / tau``, what snnTorch uses; ``"exp"``:
``beta = exp(-dt / tau)``, input ``(1 - beta) r``, spiketrain's own). A ``v_reset`` of 0
means reset to zero unless spiketrain's metadata says ``subtract``.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

SUPPORTED = ("Input", "Output", "Linear", "Affine", "LIF", "LI", "NIRGraph")
DISCRETISATIONS = ("exp", "euler")


def _nir():
    try:
        import nir
    except ImportError as e:
        raise ImportError("NIR export/import needs the nir package: pip install "
                          "'spiketrain[nir]'") from e
    return nir


def _np(t) -> np.ndarray:
    return np.asarray(torch.as_tensor(t).detach().double().cpu().numpy(), dtype=np.float64)


# ----------------------------------------------------------------------------- export
def _layer_node(layer, dt: float):
    """(LIF node, input coefficient) of one layer at step ``dt`` ms."""
    nir = _nir()
    from .snn.adlif import AdLIFLayer
    from .snn.learnable import LearnableALIFLayer, LearnableLIFLayer
    H = layer.n_hidden
    meta = {"spiketrain_reset": layer.reset}
    spec = layer.kernel_spec() if callable(getattr(layer, "kernel_spec", None)) else None
    if spec is not None:  # constant LIF / ALIF
        beta = np.full(H, spec.beta)
        if spec.alif:
            meta.update(spiketrain_neuron="alif",
                        tau_adapt=np.full(H, -dt / math.log(spec.rho) / 1000.0),
                        adapt=np.full(H, spec.adapt))
    elif isinstance(layer, AdLIFLayer):
        if layer.form != "tau":
            raise ValueError("an adlif layer in its state-space form (after a resolution "
                             "mapping) has no NIR node; export the run before adapting it")
        beta = _np(layer.decays()[0])
        meta.update(spiketrain_neuron="adlif", tau_adapt=_np(layer.tau_adapt) / 1000.0,
                    a=_np(layer.coupling.clamp(-1, 1)), b=_np(layer.spike_adapt.clamp(0, 2)))
    elif isinstance(layer, LearnableALIFLayer):
        beta = _np(layer.beta)
        meta.update(spiketrain_neuron="alif", tau_adapt=_np(layer.tau_adapt) / 1000.0,
                    adapt=_np(layer.adapt))
    elif isinstance(layer, LearnableLIFLayer):
        beta = _np(layer.beta)
    else:
        raise ValueError(f"no NIR node for neuron {type(layer).__name__} (supported: LIF, "
                         f"ALIF, lif_learn, alif_learn, adlif)")
    tau = -dt / np.log(beta)
    # adlif applies (1 - alpha) itself: r = 1 keeps (1 - beta) r equal to it
    r = np.ones(H) if meta.get("spiketrain_neuron") == "adlif" else 1.0 / (1.0 - beta)
    node = nir.LIF(tau=tau / 1000.0, r=r, v_leak=np.zeros(H),
                   v_threshold=np.full(H, float(layer.threshold)), v_reset=np.zeros(H),
                   metadata=meta)
    return node


def to_nir(model, dt: float):
    """The NIR graph of an RSNN-style model run at step ``dt`` (ms)."""
    nir = _nir()
    for attr in ("layers", "w_out", "b_out", "kappa"):
        if not hasattr(model, attr):
            raise ValueError(f"NIR export needs an RSNN-style model; {type(model).__name__} "
                             f"has no {attr!r}")
    nodes = {"input": nir.Input(input_type={"input": np.array([model.layers[0].n_in])})}
    edges, prev = [], "input"
    for k, layer in enumerate(model.layers):
        nodes[f"w_in{k}"] = nir.Linear(weight=_np(layer.w_in))
        nodes[f"lif{k}"] = _layer_node(layer, dt)
        edges += [(prev, f"w_in{k}"), (f"w_in{k}", f"lif{k}")]
        if getattr(layer, "w_rec", None) is not None:
            nodes[f"w_rec{k}"] = nir.Linear(weight=_np(layer.w_rec))
            edges += [(f"lif{k}", f"w_rec{k}"), (f"w_rec{k}", f"lif{k}")]
        prev = f"lif{k}"
    C = model.w_out.shape[0]
    kappa = float(model.kappa)
    nodes["w_out"] = nir.Affine(weight=_np(model.w_out), bias=_np(model.b_out))
    nodes["readout"] = nir.LI(tau=np.full(C, -dt / math.log(kappa) / 1000.0),
                              r=np.full(C, 1.0 / (1.0 - kappa)), v_leak=np.zeros(C))
    nodes["output"] = nir.Output(output_type={"output": np.array([C])})
    edges += [(prev, "w_out"), ("w_out", "readout"), ("readout", "output")]
    meta = {"spiketrain_dt_ms": float(dt), "spiketrain_discretisation": "exp",
            "spiketrain_readout": getattr(model, "readout", "max")}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta)


def export_nir(model, path: str | Path, dt: float) -> Path:
    """Write :func:`to_nir` of ``model`` (step ``dt`` ms) to ``path`` (HDF5)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _nir().write(str(path), to_nir(model, dt))
    return path


# ----------------------------------------------------------------------------- import
def _flatten(graph):
    """Inline nested NIRGraph nodes (``outer.inner`` names)."""
    nir = _nir()
    nodes, edges = {}, list(graph.edges)
    for name, node in graph.nodes.items():
        if not isinstance(node, nir.NIRGraph):
            nodes[name] = node
            continue
        sub = _flatten(node)
        ins = [n for n, v in sub.nodes.items() if isinstance(v, nir.Input)]
        outs = [n for n, v in sub.nodes.items() if isinstance(v, nir.Output)]
        for n, v in sub.nodes.items():
            if n not in ins and n not in outs:
                nodes[f"{name}.{n}"] = v
        heads = [f"{name}.{b}" for a, b in sub.edges if a in ins]
        tails = [f"{name}.{a}" for a, b in sub.edges if b in outs]
        inner = [(f"{name}.{a}", f"{name}.{b}") for a, b in sub.edges
                 if a not in ins and b not in outs]
        new = []
        for a, b in edges:
            if b == name:
                new += [(a, h) for h in heads]
            elif a == name:
                new += [(t, b) for t in tails]
            else:
                new.append((a, b))
        edges = new + inner
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=dict(graph.metadata or {}),
                        type_check=False)


def _meta(node) -> dict:
    return dict(getattr(node, "metadata", None) or {})


def _chain(graph):
    """Nodes from Input to Output along the feed-forward edges, plus recurrent weights."""
    nir = _nir()
    for name, node in graph.nodes.items():
        kind = type(node).__name__
        if kind not in SUPPORTED:
            raise ValueError(f"NIR node {name!r} of type {kind} is not supported (supported: "
                             f"{', '.join(SUPPORTED)})")
    succ: dict[str, list[str]] = {}
    for a, b in graph.edges:
        succ.setdefault(a, []).append(b)
    rec = {}  # lif -> weight node of a cycle lif -> w -> lif
    for lif, outs in succ.items():
        for w in outs:
            if lif in succ.get(w, []) and isinstance(graph.nodes[lif], nir.LIF):
                rec[lif] = w
    inputs = [n for n, v in graph.nodes.items() if isinstance(v, nir.Input)]
    if len(inputs) != 1:
        raise ValueError(f"a NIR graph with one Input node is supported, found {len(inputs)}")
    chain, cur, seen = [], inputs[0], set()
    while True:
        chain.append(cur)
        seen.add(cur)
        nxt = [b for b in succ.get(cur, []) if b not in seen and b != rec.get(cur)]
        if isinstance(graph.nodes[cur], nir.Output) or not nxt:
            break
        if len(nxt) > 1:
            raise ValueError(f"NIR node {cur!r} fans out to {nxt}: only chains are supported")
        cur = nxt[0]
    if not isinstance(graph.nodes[chain[-1]], nir.Output):
        raise ValueError("the NIR graph's chain from its Input does not reach an Output")
    return chain, rec


def _discrete(tau_s, r, dt, disc):
    """(decay, input coefficient) per neuron of ``tau dv/dt = -v + r I`` at step ``dt`` ms."""
    tau = np.asarray(tau_s, dtype=np.float64).reshape(-1) * 1000.0
    r = np.broadcast_to(np.asarray(r, dtype=np.float64).reshape(-1), tau.shape)
    if disc == "exp":
        beta = np.exp(-dt / tau)
        return beta, (1.0 - beta) * r
    beta = 1.0 - dt / tau
    if np.any(beta <= 0) or np.any(beta >= 1):
        raise ValueError(f"euler discretisation at dt={dt} ms gives decays outside (0, 1) "
                         f"(tau {tau.min():.4g}..{tau.max():.4g} ms); check dt")
    return beta, dt * r / tau


def _weight(node):
    w = torch.as_tensor(np.asarray(node.weight, dtype=np.float64))
    b = getattr(node, "bias", None)
    return w, (None if b is None else torch.as_tensor(np.asarray(b, dtype=np.float64)))


def from_nir(source, dt: float | None = None, discretisation: str | None = None,
             learn_tau: bool = True, readout: str | None = None):
    """A trainable RSNN from a NIR graph (a path or a ``nir.NIRGraph``); see the module
    docstring. ``dt`` (ms) and ``discretisation`` default to the values a spiketrain export
    recorded; a graph from another library needs ``dt``."""
    nir = _nir()
    from .snn.rsnn import RSNN
    graph = nir.read(str(source)) if isinstance(source, (str, Path)) else source
    graph = _flatten(graph)
    meta = dict(graph.metadata or {})
    dt = float(dt if dt is not None else meta.get("spiketrain_dt_ms", 0) or 0)
    if not dt > 0:
        raise ValueError("this NIR graph does not record spiketrain's step: pass dt (ms), the "
                         "step the writing library simulates (snnTorch: 0.1 ms)")
    disc = discretisation or meta.get("spiketrain_discretisation", "euler")
    if disc not in DISCRETISATIONS:
        raise ValueError(f"discretisation must be one of {DISCRETISATIONS}, got {disc!r}")
    chain, rec = _chain(graph)
    nodes = graph.nodes
    layers, pending, out = [], None, None
    for name in chain[1:-1]:
        node = nodes[name]
        if isinstance(node, (nir.Linear, nir.Affine)):
            if pending is not None:
                raise ValueError(f"two weight nodes in a row before {name!r} are not supported")
            pending = (name, node)
        elif isinstance(node, nir.LIF):
            if pending is None:
                raise ValueError(f"LIF {name!r} needs a Linear/Affine node before it")
            layers.append((name, node, pending, rec.get(name)))
            pending = None
        elif isinstance(node, nir.LI):
            if pending is None or out is not None:
                raise ValueError(f"LI {name!r} must follow one Linear/Affine node, at the end")
            out = (name, node, pending)
            pending = None
    if pending is not None or not layers:
        raise ValueError("the NIR chain must be (weights -> LIF)+ [weights -> LI]")
    spiking_out = out is None
    return _build(RSNN, nodes, layers, out, spiking_out, dt, disc, learn_tau,
                  readout or meta.get("spiketrain_readout", "last" if spiking_out else "max"))


def _build(RSNN, nodes, layers, out, spiking_out, dt, disc, learn_tau, readout):
    kinds = {_meta(n).get("spiketrain_neuron", "lif") for _, n, _, _ in layers}
    if len(kinds) > 1:
        raise ValueError(f"layers of different neuron kinds {sorted(kinds)} are not supported")
    kind = kinds.pop()
    resets = {_meta(n).get("spiketrain_reset", "zero") for _, n, _, _ in layers}
    reset = resets.pop() if len(resets) == 1 else "zero"
    for name, node, _, _ in layers:
        if np.any(np.asarray(node.v_leak) != 0):
            raise ValueError(f"LIF {name!r}: v_leak != 0 is not supported")
        vr = getattr(node, "v_reset", None)
        if vr is not None and np.any(np.asarray(vr) != 0):
            raise ValueError(f"LIF {name!r}: v_reset != 0 is not supported")
    sizes = [int(np.asarray(n.tau).size) for _, n, _, _ in layers]
    w0, _ = _weight(layers[0][2][1])
    n_in = w0.shape[1]
    if out is not None:
        w_o, _ = _weight(out[2][1])
        n_out = w_o.shape[0]
    else:
        n_out = sizes[-1]
    neuron = {"lif": "lif_learn", "alif": "alif_learn", "adlif": "adlif"}[kind]
    from .snn import adlif as _adlif, learnable as _learnable  # noqa: F401  (register)
    thr = 1.0
    if kind == "adlif":
        ths = {float(t) for _, n, _, _ in layers for t in np.asarray(n.v_threshold).reshape(-1)}
        if len(ths) != 1:
            raise ValueError("adlif layers need one threshold for all neurons")
        thr = ths.pop()
    model = RSNN(n_in=n_in, hidden=sizes, n_out=n_out, neuron=neuron, dt=dt, reset=reset,
                 threshold=thr, readout=readout,
                 neuron_options={"learn_tau": learn_tau}).double()
    with torch.no_grad():
        for layer, (name, node, (wname, wnode), rname) in zip(model.layers, layers):
            _fill_layer(layer, kind, name, node, wnode, nodes.get(rname), dt, disc)
        if out is not None:
            kap, c = _discrete(out[1].tau, out[1].r, dt, disc)
            if np.ptp(kap) > 1e-12:
                raise ValueError(f"LI {out[0]!r}: one time constant for all outputs is supported")
            w, b = _weight(out[2][1])
            c = torch.as_tensor(c)[:, None]
            model.w_out.copy_(w * c)
            model.b_out.copy_((b if b is not None else torch.zeros(n_out)) * c[:, 0])
            model.kappa = float(kap[0])
        else:  # spiking output: the last LIF layer's spikes are the outputs
            model.w_out.copy_(torch.eye(n_out))
            model.b_out.zero_()
            model.kappa = 0.0
    return model.float()


def _fill_layer(layer, kind, name, node, wnode, rnode, dt, disc):
    beta, c = _discrete(node.tau, node.r, dt, disc)
    H = beta.size
    theta = np.asarray(node.v_threshold, dtype=np.float64).reshape(-1) * np.ones(H)
    w, b = _weight(wnode)
    if b is not None and bool(b.abs().gt(0).any()):
        raise ValueError(f"a bias on the input of LIF {name!r} is not supported")
    if kind == "adlif":  # its update applies (1 - alpha); the rest of c is a gain
        gain = torch.as_tensor(c / (1.0 - beta))[:, None]
    else:  # normalise every neuron to threshold 1 (exact for v_leak = 0, v_reset = 0)
        gain = torch.as_tensor(c / theta)[:, None]
    layer.w_in.copy_(w * gain)
    if rnode is not None:
        wr, br = _weight(rnode)
        if br is not None and bool(br.abs().gt(0).any()):
            raise ValueError(f"a bias on the recurrent weights of LIF {name!r} is not supported")
        layer.w_rec.copy_(wr * gain)
    else:
        layer.recurrent = False
        layer.w_rec = None
    layer.log_tau_mem.copy_(torch.log(torch.as_tensor(-dt / np.log(beta))))
    meta = _meta(node)
    if kind == "alif":
        rho = np.exp(-dt / (np.asarray(meta["tau_adapt"], dtype=np.float64) * 1000.0))
        layer.log_tau_adapt.copy_(torch.log(torch.as_tensor(-dt / np.log(rho))))
        layer.adapt.copy_(torch.as_tensor(np.asarray(meta["adapt"], dtype=np.float64) / theta))
    elif kind == "adlif":
        layer.log_tau_adapt.copy_(torch.log(torch.as_tensor(
            np.asarray(meta["tau_adapt"], dtype=np.float64) * 1000.0)))
        layer.coupling.copy_(torch.as_tensor(np.asarray(meta["a"], dtype=np.float64)))
        layer.spike_adapt.copy_(torch.as_tensor(np.asarray(meta["b"], dtype=np.float64)))


def _register_config_model() -> None:
    from .registry import register
    from .snn.rsnn import RSNN

    @register("nir")
    class NIRModel(RSNN):
        """Config entry ``model: {name: nir, path: model.nir, dt: 0.1, discretisation:
        euler}``: builds the RSNN of a NIR file with :func:`from_nir` (the instance returned
        is that RSNN)."""

        def __new__(cls, path: str, dt: float | None = None,
                    discretisation: str | None = None, learn_tau: bool = True,
                    readout: str | None = None):
            return from_nir(path, dt=dt, discretisation=discretisation, learn_tau=learn_tau,
                            readout=readout)


_register_config_model()

__all__ = ["SUPPORTED", "to_nir", "export_nir", "from_nir"]
