"""Neuron registry: neuron layers by name (``"lif"``, ``"alif"``, ``@register_neuron``) or by
class path (``"mypkg.neurons:MyNeuron"``, refused unless it names a :class:`NeuronLayer`)."""
from __future__ import annotations

import inspect
from typing import Callable

from .neurons import ALIFLayer, LIFLayer, NeuronLayer

NEURONS: dict[str, type] = {"lif": LIFLayer, "alif": ALIFLayer}


def register_neuron(name: str) -> Callable[[type], type]:
    """Class decorator: ``@spiketrain.models.register_neuron("cuba")`` on a NeuronLayer
    subclass makes ``RSNN(neuron="cuba")`` (and ``model: {neuron: cuba}``) build it."""

    def deco(cls: type) -> type:
        if not (isinstance(cls, type) and issubclass(cls, NeuronLayer)):
            raise TypeError(f"register_neuron({name!r}): {cls!r} is not a subclass of "
                            f"spiketrain.models.NeuronLayer")
        NEURONS[name] = cls
        return cls

    return deco


def available_neurons() -> list[str]:
    """Registered neuron names."""
    return sorted(NEURONS)


def resolve_neuron(neuron) -> type:
    """A registered name, a ``"package.module:Class"`` path or a NeuronLayer subclass -> the
    class (anything else is refused with the choices)."""
    if isinstance(neuron, type):
        if issubclass(neuron, NeuronLayer):
            return neuron
        raise ValueError(f"neuron {neuron.__name__} is not a subclass of "
                         f"spiketrain.models.NeuronLayer")
    if not isinstance(neuron, str):
        raise ValueError(f"neuron must be a name, a class path or a NeuronLayer subclass, "
                         f"got {neuron!r}")
    if neuron in NEURONS:
        return NEURONS[neuron]
    if ":" in neuron or "." in neuron:
        from ...classpath import import_class
        return import_class(neuron, NeuronLayer, "neuron layer")
    raise ValueError(f"unknown neuron {neuron!r}; choose one of {available_neurons()} or give "
                     f"a class path like 'mypkg.neurons:MyNeuron'")


def accepted_options(cls: type) -> set[str] | None:
    """Keyword names ``cls(...)`` accepts, following ``**kw`` up the class's bases; None when
    a constructor takes ``**kw`` that reaches no named signature (accept everything)."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        if klass in (NeuronLayer.__mro__[1:]):  # nn.Module and object: the end of the chain
            return names
        params = inspect.signature(klass.__init__).parameters.values()
        names |= {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            return names
    return None
