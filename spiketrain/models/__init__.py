"""Models: the RecurrentModel contract, spiking neurons, surrogates, RSNN, registry."""
from .base import (RecurrentModel, State, state_detach, state_flatten, state_map, state_nbytes,
                   state_unflatten, unwrap)
from .neurons import ALIFLayer, LIFLayer, NEURONS
from .registry import available, build, register, resolve
from .rsnn import RSNN, reduce_outputs
from .surrogates import SURROGATE_GRADS, spike, surrogate_grad

__all__ = ["RecurrentModel", "State", "state_detach", "state_flatten", "state_map",
           "state_nbytes", "state_unflatten", "unwrap", "LIFLayer", "ALIFLayer", "NEURONS",
           "available", "build", "register", "resolve", "RSNN", "reduce_outputs",
           "SURROGATE_GRADS", "spike", "surrogate_grad"]
