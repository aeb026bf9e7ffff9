"""Recurrent spiking classifier: input -> N recurrent LIF/ALIF layers -> leaky readout.

Default shape is the Spiking Heidelberg Digits task: 700 -> 256 -> 20.
``outputs [T, B, C]`` are readout membrane potentials; :func:`reduce_outputs` turns
them into logits ``[B, C]`` (max / sum / mean / last over time).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .base import RecurrentModel
from .neurons import NEURONS, _decay
from .registry import register

READOUTS = ("max", "sum", "mean", "last")


def reduce_outputs(outputs: Tensor, how: str = "max") -> Tensor:
    """``outputs [T, B, C] -> logits [B, C]`` by ``how`` in max / sum / mean / last."""
    if how == "max":
        return outputs.max(0).values
    if how == "sum":
        return outputs.sum(0)
    if how == "mean":
        return outputs.mean(0)
    if how == "last":
        return outputs[-1]
    raise ValueError(f"unknown readout {how!r}; choose one of {READOUTS}")


_FUSABLE = tuple(NEURONS.values())


def _is_sparse_spikes(x) -> bool:
    return not isinstance(x, Tensor) and hasattr(x, "time_ptr") and hasattr(x, "dense")


@register("rsnn")
class RSNN(RecurrentModel):
    """Recurrent SNN. State: ``(layer_0_state, ..., layer_{N-1}_state, o)``.

    Args:
        n_in, hidden, n_out: sizes (``hidden`` an int or a list, one per layer).
        layers: number of recurrent layers when ``hidden`` is an int.
        neuron: ``"lif"`` or ``"alif"``; reset: ``"subtract"`` or ``"zero"``.
        tau_mem, tau_out, tau_adapt, dt: time constants (ms); surrogate: name.
        readout: how :meth:`logits` reduces outputs over time.
        fused: :meth:`chunk` runs each layer as one fused autograd node
            (:mod:`spiketrain.hardware.fused_lif`); False loops :meth:`step`-style ops.
        sparse: input projection kernel, ``"auto"`` (by spike rate), ``"sparse"`` or ``"dense"``.
        spike_storage: how spikes are kept for backward: ``"bool"``, ``"bits"`` or ``"float"``.
    """

    def __init__(self, n_in: int = 700, hidden: int | list[int] = 256, n_out: int = 20,
                 layers: int = 1, neuron: str = "lif", recurrent: bool = True,
                 reset: str = "subtract", surrogate: str = "fast_sigmoid", tau_mem: float = 20.0,
                 tau_out: float = 20.0, tau_adapt: float = 200.0, dt: float = 1.0,
                 threshold: float = 1.0, readout: str = "max", input_gain: float = 3.0,
                 rec_gain: float = 1.0, fused: bool = True, sparse: str = "auto",
                 spike_storage: str = "bool"):
        super().__init__()
        from ..hardware.bits import STORAGES
        from ..hardware.sparse import MODES
        if sparse not in MODES:
            raise ValueError(f"sparse must be one of {MODES}, got {sparse!r}")
        if spike_storage not in STORAGES:
            raise ValueError(f"spike_storage must be one of {STORAGES}, got {spike_storage!r}")
        self.fused, self.sparse, self.spike_storage = bool(fused), sparse, spike_storage
        from ..hardware.fused_lif import DEFAULT_BLOCK
        self.fused_block = DEFAULT_BLOCK  # steps between membrane checkpoints in a fused chunk
        if neuron not in NEURONS:
            raise ValueError(f"unknown neuron {neuron!r}; choose one of {sorted(NEURONS)}")
        if readout not in READOUTS:
            raise ValueError(f"unknown readout {readout!r}; choose one of {READOUTS}")
        sizes = list(hidden) if isinstance(hidden, (list, tuple)) else [int(hidden)] * int(layers)
        if not sizes or min(sizes) <= 0:
            raise ValueError(f"hidden sizes must be positive, got {hidden!r}")
        self.n_in, self.n_out, self.readout = n_in, n_out, readout
        kw = dict(recurrent=recurrent, tau_mem=tau_mem, dt=dt, threshold=threshold, reset=reset,
                  surrogate=surrogate, rec_gain=rec_gain)
        if neuron == "alif":
            kw["tau_adapt"] = tau_adapt
        self.layers = nn.ModuleList()
        prev = n_in
        for i, h in enumerate(sizes):
            gain = input_gain if i == 0 else 1.5
            self.layers.append(NEURONS[neuron](prev, h, input_gain=gain, **kw))
            prev = h
        self.kappa = _decay(tau_out, dt)
        self.w_out = nn.Parameter(torch.randn(n_out, prev) / math.sqrt(prev))
        self.b_out = nn.Parameter(torch.zeros(n_out))

    def init_state(self, batch_size: int):
        o = self.w_out.new_zeros(batch_size, self.n_out)
        return tuple(l.init_state(batch_size) for l in self.layers) + (o,)

    def per_neuron_state(self):
        return [l.state_names for l in self.layers]

    def _readout(self, o: Tensor, z: Tensor) -> Tensor:
        return self.kappa * o + z @ self.w_out.t() + self.b_out

    def step(self, state, x_t: Tensor):
        """``x_t [B, n_in] -> (state, o_t [B, n_out])``."""
        *hs, o = state
        new = []
        inp = x_t
        for layer, h in zip(self.layers, hs):
            h, inp = layer.step(h, inp)
            new.append(h)
        o = self._readout(o, inp)
        return tuple(new) + (o,), o

    def chunk(self, state, x):
        """``x [T, B, n_in]`` (Tensor or SparseSpikes) ``-> (state, o [T, B, n_out])``;
        same result as looping :meth:`step`.

        Fused (default): each layer is one autograd node that keeps its spikes in binary
        form and its membrane every few hundred steps, and recomputes the rest in
        backward; the first layer's input projection runs once over the whole chunk,
        through the sparse kernel when the input spike rate is low.
        """
        sparse_in = _is_sparse_spikes(x)
        # The fused kernel implements exactly LIFLayer/ALIFLayer; any other layer (a subclass
        # or a swapped-in cell) takes the generic path.
        if not self.fused or any(type(l) not in _FUSABLE for l in self.layers):
            return self._chunk_loop(state, x.dense() if sparse_in else x)
        from ..hardware.fused_lif import fused_layer
        from ..hardware.leaky_readout import leaky_readout
        *hs, o = state
        hs = list(hs)
        inp, store = (None, None) if sparse_in else (x, None)
        for k, layer in enumerate(self.layers):
            hs[k], inp, store = fused_layer(layer, hs[k], inp, in_store=store,
                                            sparse=x if (k == 0 and sparse_in) else None,
                                            mode=self.sparse, storage=self.spike_storage,
                                            block=self.fused_block)
        outs = leaky_readout(inp, store, self.w_out, self.b_out, o, self.kappa)
        return tuple(hs) + (outs[-1],), outs

    def _chunk_loop(self, state, x: Tensor):
        """Reference multi-step path: autograd through the step ops (first layer's input
        projection over the whole chunk)."""
        *hs, o = state
        first = self.layers[0]
        i_in = first.input_current(x)
        outs = []
        hs = list(hs)
        for i_t in i_in.unbind(0):
            hs[0] = first.step_current(hs[0], i_t)
            inp = hs[0][-1]
            for k in range(1, len(self.layers)):
                hs[k], inp = self.layers[k].step(hs[k], inp)
            o = self._readout(o, inp)
            outs.append(o)
        return tuple(hs) + (o,), torch.stack(outs, 0)

    def logits(self, outputs: Tensor) -> Tensor:
        """``outputs [T, B, C] -> [B, C]`` with this model's readout reduction."""
        return reduce_outputs(outputs, self.readout)
