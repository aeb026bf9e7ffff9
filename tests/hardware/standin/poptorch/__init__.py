"""Minimal stand-in for poptorch (Graphcore Poplar SDK), used only by tests.

It has the API surface spiketrain calls, with the same names and call shapes, and runs on
the CPU: ``trainingModel(module, options, optimizer)`` returns a callable that runs
forward, ``loss.backward()`` and ``optimizer.step()`` like a compiled IPU training step;
``recomputationCheckpoint`` is the identity and counts its calls; ``Options`` records what
was set.
"""
import torch

__version__ = "0.0-standin"
HARDWARE_AVAILABLE = True
checkpoint_calls = []


def ipuHardwareIsAvailable(num_ipus=1):
    return HARDWARE_AVAILABLE


def recomputationCheckpoint(*tensors):
    checkpoint_calls.append(len(tensors))
    return tensors[0] if len(tensors) == 1 else tensors


class TensorLocationSettings:
    def __init__(self):
        self.settings = {}

    def useOnChipStorage(self, use=True):
        assert isinstance(use, bool)
        self.settings["onChip"] = int(use)
        return self

    def toDict(self):
        return dict(self.settings)


class _Training:
    def __init__(self):
        self.gradient_accumulation = 1

    def gradientAccumulation(self, n):
        self.gradient_accumulation = int(n)
        return self


class _TensorLocations:
    def __init__(self):
        self.locations = {}

    def setActivationLocation(self, location):
        assert isinstance(location, TensorLocationSettings)
        self.locations["location_activation"] = location.toDict()
        return self


class Options:
    def __init__(self):
        self.Training = _Training()
        self.TensorLocations = _TensorLocations()
        self.device_iterations = 1
        self.available_memory_proportion = None
        self.ipu_model = False

    def deviceIterations(self, n):
        self.device_iterations = int(n)
        return self

    def setAvailableMemoryProportion(self, proportions):
        assert all(k.startswith("IPU") and 0 < v <= 1 for k, v in proportions.items())
        self.available_memory_proportion = dict(proportions)
        return self

    def useIpuModel(self, use_model):
        self.ipu_model = bool(use_model)
        return self


class _TrainingExecutor:
    def __init__(self, model, options, optimizer):
        self.model, self.options, self.optimizer = model, options, optimizer

    def __call__(self, *args):
        out = self.model(*args)
        loss = out[-1] if isinstance(out, (tuple, list)) else out
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return out


def trainingModel(model, options=None, optimizer=None):
    if optimizer is None:
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    return _TrainingExecutor(model, options or Options(), optimizer)
