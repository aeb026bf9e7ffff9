"""Models: the RecurrentModel contract, spiking networks (neurons, surrogates, RSNN), registry."""
from .base import (RecurrentModel, State, state_detach, state_flatten, state_map, state_nbytes,
                   state_unflatten, unwrap)
from .registry import available, build, register, resolve
from .snn import (ALIFLayer, LIFLayer, NEURONS, RSNN, SURROGATE_GRADS, NeuronLayer,
                  available_neurons, reduce_outputs, register_neuron, resolve_neuron, spike,
                  surrogate_grad)

__all__ = ["RecurrentModel", "State", "state_detach", "state_flatten", "state_map",
           "state_nbytes", "state_unflatten", "unwrap", "LIFLayer", "ALIFLayer", "NEURONS",
           "NeuronLayer", "available_neurons", "register_neuron", "resolve_neuron",
           "available", "build", "register", "resolve", "RSNN", "reduce_outputs",
           "SURROGATE_GRADS", "spike", "surrogate_grad"]
from . import gaincell  # noqa: E402,F401  (registers "gaincell_gpt")
from . import detector  # noqa: E402,F401  (registers "hybrid_detector")

# neurons with learnable time constants ("adlif", "lif_learn", "alif_learn" by name),
# zero-shot temporal-resolution mapping, NIR import
from .snn import adlif as _adlif, learnable as _learnable  # noqa: E402,F401
from . import resolution  # noqa: E402
from .nir_io import from_nir  # noqa: E402

__all__ += ["from_nir", "resolution"]
