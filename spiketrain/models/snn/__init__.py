"""Spiking networks: the NeuronLayer protocol, LIF/ALIF neurons, surrogates, the RSNN, and
their fast paths (fused chunk, compiled kernels, e-prop kernel), each update written once.

- :mod:`.neurons`: :class:`NeuronLayer` (the protocol a custom neuron implements),
  :class:`LIFLayer`, :class:`ALIFLayer` and the one LIF/ALIF membrane update;
- :mod:`.registry`: neurons by name (:func:`register_neuron`) or class path;
- :mod:`.rsnn`: :class:`RSNN` (layers of any neuron + leaky readout);
- :mod:`.readout`: the leaky readout and the reduction over time;
- :mod:`.fused`, :mod:`.lif_numba`, :mod:`.eprop_kernel`: the LIF/ALIF fast paths, offered
  by the layers through ``kernel_spec()`` / ``eprop_kernel()``.
"""
from .neurons import ALIFLayer, LIFLayer, LIFSpec, NeuronLayer, lif_membrane
from .readout import READOUTS, TimeReduce, leaky_update, reduce_outputs
from .registry import NEURONS, available_neurons, register_neuron, resolve_neuron
from .rsnn import RSNN
from .surrogates import SURROGATE_GRADS, spike, surrogate_grad

__all__ = ["ALIFLayer", "LIFLayer", "LIFSpec", "NeuronLayer", "lif_membrane", "READOUTS",
           "TimeReduce", "leaky_update", "reduce_outputs", "NEURONS", "available_neurons",
           "register_neuron", "resolve_neuron", "RSNN", "SURROGATE_GRADS", "spike",
           "surrogate_grad"]
