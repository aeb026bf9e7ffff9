"""Recurrent spiking classifier: input -> N recurrent neuron layers -> leaky readout.

Default shape is the Spiking Heidelberg Digits task: 700 -> 256 -> 20.
``outputs [T, B, C]`` are readout membrane potentials; :meth:`RSNN.logits` turns them into
logits ``[B, C]`` (max / sum / mean / last over time, :func:`.readout.reduce_outputs`).
The neuron is any :class:`.neurons.NeuronLayer`: ``"lif"``, ``"alif"``, a registered name
or a class path. Fast paths are the layers' capabilities (``kernel_spec()``), never types.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..base import RecurrentModel
from ..registry import register
from .neurons import _decay
from .readout import READOUTS, TimeReduce, leaky_scan, leaky_update, reduce_outputs
from .registry import accepted_options, resolve_neuron


def _is_sparse_spikes(x) -> bool:
    return not isinstance(x, Tensor) and hasattr(x, "time_ptr") and hasattr(x, "dense")


@register("rsnn")
class RSNN(RecurrentModel):
    """Recurrent SNN. State: ``(layer_0_state, ..., layer_{N-1}_state, o)``.

    Args:
        n_in, hidden, n_out: sizes (``hidden`` an int or a list, one per layer).
        layers: number of recurrent layers when ``hidden`` is an int.
        neuron: ``"lif"``, ``"alif"``, a name registered with
            :func:`~spiketrain.models.register_neuron`, a class path
            ``"mypkg.neurons:MyNeuron"`` or a :class:`NeuronLayer` subclass. Each option
            below that its constructor names is passed to it; ``neuron_options`` adds more.
        reset: ``"subtract"`` or ``"zero"``.
        tau_mem, tau_out, tau_adapt, dt: time constants (ms); surrogate: name.
        readout: how :meth:`logits` reduces outputs over time.
        fused: :meth:`chunk` runs each layer that offers a ``kernel_spec()`` as one fused
            autograd node (:mod:`.fused`); False (or ``set_fast_paths(False)``) loops
            :meth:`step`-style ops.
        sparse: input projection kernel, ``"auto"`` (by spike rate), ``"sparse"`` or ``"dense"``.
        spike_storage: how spikes are kept for backward: ``"bool"``, ``"bits"`` or ``"float"``.
        keep_membrane: fused layers keep the surrogate derivative of every step (``T B H``
            floats per layer) so backward need not replay the membrane: faster, more memory.
            False (default) replays it block by block from the kept spikes. Same gradients.
        sparse_backward: None (default) for the exact gradient; a float ``c`` zeroes the
            surrogate derivative wherever ``|v - thr| / threshold > c`` (Perez-Nieves &
            Goodman 2021), so backward's recurrent product visits only the neurons near
            threshold. An approximation: never on by default; fused layers only.
    """

    def __init__(self, n_in: int = 700, hidden: int | list[int] = 256, n_out: int = 20,
                 layers: int = 1, neuron: str = "lif", recurrent: bool = True,
                 reset: str = "subtract", surrogate: str = "fast_sigmoid", tau_mem: float = 20.0,
                 tau_out: float = 20.0, tau_adapt: float = 200.0, dt: float = 1.0,
                 threshold: float = 1.0, readout: str = "max", input_gain: float = 3.0,
                 rec_gain: float = 1.0, fused: bool = True, sparse: str = "auto",
                 spike_storage: str = "bool", neuron_options: dict | None = None,
                 keep_membrane: bool = False, sparse_backward: float | None = None):
        super().__init__()
        from ...hardware.bits import STORAGES
        from ...hardware.sparse import MODES
        if sparse not in MODES:
            raise ValueError(f"sparse must be one of {MODES}, got {sparse!r}")
        if spike_storage not in STORAGES:
            raise ValueError(f"spike_storage must be one of {STORAGES}, got {spike_storage!r}")
        self.fast_paths, self.sparse, self.spike_storage = bool(fused), sparse, spike_storage
        if sparse_backward is not None and not float(sparse_backward) > 0:
            raise ValueError(f"sparse_backward must be a positive number or None, "
                             f"got {sparse_backward!r}")
        self.keep_membrane = bool(keep_membrane)
        # the surrogate cut-off of the sparse backward (None: exact), a metric of the run
        self.sparse_backward = None if sparse_backward is None else float(sparse_backward)
        from .fused import DEFAULT_BLOCK
        self.fused_block = DEFAULT_BLOCK  # steps between membrane checkpoints in a fused chunk
        cls = resolve_neuron(neuron)
        if readout not in READOUTS:
            raise ValueError(f"unknown readout {readout!r}; choose one of {READOUTS}")
        sizes = list(hidden) if isinstance(hidden, (list, tuple)) else [int(hidden)] * int(layers)
        if not sizes or min(sizes) <= 0:
            raise ValueError(f"hidden sizes must be positive, got {hidden!r}")
        self.n_in, self.n_out, self.readout = n_in, n_out, readout
        kw = dict(recurrent=recurrent, tau_mem=tau_mem, dt=dt, threshold=threshold, reset=reset,
                  surrogate=surrogate, rec_gain=rec_gain, tau_adapt=tau_adapt)
        names = accepted_options(cls)
        kw = {k: v for k, v in kw.items() if names is None or k in names}
        kw.update(neuron_options or {})
        self.layers = nn.ModuleList()
        prev = n_in
        for i, h in enumerate(sizes):
            gain = {"input_gain": input_gain if i == 0 else 1.5}
            if names is not None and "input_gain" not in names:
                gain = {}
            try:
                self.layers.append(cls(prev, h, **gain, **kw))
            except TypeError as e:
                raise ValueError(f"neuron {cls.__name__} rejected its options: {e}") from None
            prev = h
        self.kappa = _decay(tau_out, dt)
        self.w_out = nn.Parameter(torch.randn(n_out, prev) / math.sqrt(prev))
        self.b_out = nn.Parameter(torch.zeros(n_out))

    def init_state(self, batch_size: int):
        o = self.w_out.new_zeros(batch_size, self.n_out)
        return tuple(l.init_state(batch_size) for l in self.layers) + (o,)

    takes_sparse_input = True  # chunk() takes a SparseSpikes window (fused: from its indices)

    @property
    def fused(self) -> bool:
        """Alias of :attr:`fast_paths` (the fused chunk kernels)."""
        return self.fast_paths

    @fused.setter
    def fused(self, value: bool) -> None:
        self.fast_paths = bool(value)

    def per_neuron_state(self):
        return [l.state_names for l in self.layers]

    def readout_step(self, o: Tensor, z: Tensor) -> Tensor:
        """``o_t = kappa o_{t-1} + z_t W_out^T + b_out``: ``o [B, C]``, ``z [B, H]``."""
        return leaky_update(o, z @ self.w_out.t(), self.b_out, self.kappa)

    @torch.no_grad()
    def readout_chunk(self, o: Tensor, z: Tensor) -> Tensor:
        """Readout over a chunk without autograd: ``z [K, B, H]`` from ``o [B, C]`` ->
        ``[K, B, C]`` (the same values as :meth:`readout_step` in a loop)."""
        return leaky_scan(z @ self.w_out.detach().t(), o, self.kappa, self.b_out.detach())

    def readout_reducer(self) -> TimeReduce:
        """A fresh running reduction of outputs over time (this model's ``readout``)."""
        return TimeReduce(self.readout)

    def step(self, state, x_t: Tensor):
        """``x_t [B, n_in] -> (state, o_t [B, n_out])``."""
        *hs, o = state
        new = []
        inp = x_t
        for layer, h in zip(self.layers, hs):
            h, inp = layer.step(h, inp)
            new.append(h)
        o = self.readout_step(o, inp)
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
        # a layer offers the fused kernel through kernel_spec() (None for any layer whose maths
        # differ from what the kernel implements); otherwise the generic path runs
        specs = [getattr(l, "kernel_spec", lambda: None)() for l in self.layers] \
            if self.fast_paths else [None]
        if any(s is None for s in specs):
            return self._chunk_loop(state, x.dense() if sparse_in else x)
        from .fused import fused_layer
        *hs, o = state
        hs = list(hs)
        inp, store = (None, None) if sparse_in else (x, None)
        last = len(self.layers) - 1
        for k, layer in enumerate(self.layers):
            # the last layer runs the readout in its own node: no float spikes in between
            hs[k], inp, store = fused_layer(layer, specs[k], hs[k], inp, in_store=store,
                                            sparse=x if (k == 0 and sparse_in) else None,
                                            mode=self.sparse, storage=self.spike_storage,
                                            block=self.fused_block,
                                            keep_membrane=self.keep_membrane,
                                            sparse_backward=self.sparse_backward,
                                            readout=(self.w_out, self.b_out, o, self.kappa)
                                            if k == last else None)
        return tuple(hs) + (inp[-1],), inp

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
            o = self.readout_step(o, inp)
            outs.append(o)
        return tuple(hs) + (o,), torch.stack(outs, 0)

    def logits(self, outputs: Tensor) -> Tensor:
        """``outputs [T, B, C] -> [B, C]`` with this model's readout reduction."""
        return reduce_outputs(outputs, self.readout)
