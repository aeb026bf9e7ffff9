"""Graphcore IPU backend through poptorch.

poptorch ships with the Graphcore Poplar SDK and is not on PyPI, so it is imported only
when the IPU is used; ``hardware: ipu`` without it fails with :data:`MISSING_POPTORCH`.

Mapping of spiketrain's words onto the IPU:

- tier ``device`` = on-chip SRAM (In-Processor-Memory, 900 MB per GC200),
  tier ``host`` = streaming memory (off-chip DRAM next to the IPUs);
- activations are placed off-chip with ``Options.TensorLocations.setActivationLocation(
  TensorLocationSettings().useOnChipStorage(False))`` when ``activations_off_chip``;
- segment boundaries are marked with ``poptorch.recomputationCheckpoint`` so the compiled
  backward pass recomputes each segment from its checkpointed state;
- the training step is compiled by ``poptorch.trainingModel(module, options, optimizer)``,
  whose call runs forward, backward and the optimizer step on the IPU.

The model runs its plain step ops there (``model.fused = False``): PopART differentiates
the traced forward graph itself, so the CPU/GPU fused autograd node is not used.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor, nn

from ..models.base import state_map
from .backends import Backend, _ram, disk_capacity, register_backend

MISSING_POPTORCH = (
    "hardware 'ipu' needs poptorch, which ships with the Graphcore Poplar SDK and is not on "
    "PyPI: install the Poplar SDK, source its enable.sh and pip install the poptorch wheel "
    "from the SDK folder (or set hardware: auto, cpu or cuda)")

SRAM_PER_IPU = 900 * 1000**2


def import_poptorch():
    """The poptorch module, or a RuntimeError saying where it comes from."""
    try:
        import poptorch  # type: ignore
    except ImportError:
        raise RuntimeError(MISSING_POPTORCH) from None
    return poptorch


def poptorch_importable() -> bool:
    try:
        import_poptorch()
        return True
    except RuntimeError:
        return False


@register_backend("ipu")
class IPUBackend(Backend):
    """Graphcore IPU(s) via poptorch.

    Args:
        num_ipus: IPUs used (one replica).
        activations_off_chip: keep activations in streaming memory (tier ``host``).
        available_memory_proportion: on-chip memory share for temporaries per IPU (0..1).
        gradient_accumulation, device_iterations: poptorch batching options.
        use_ipu_model: run on the IPU Model (simulator) instead of hardware.
    """

    def __init__(self, num_ipus: int = 1, activations_off_chip: bool = True,
                 available_memory_proportion: float | None = None, gradient_accumulation: int = 1,
                 device_iterations: int = 1, use_ipu_model: bool = False):
        self.poptorch = import_poptorch()
        self.num_ipus = int(num_ipus)
        self.activations_off_chip = activations_off_chip
        self.available_memory_proportion = available_memory_proportion
        self.gradient_accumulation = int(gradient_accumulation)
        self.device_iterations = int(device_iterations)
        self.use_ipu_model = use_ipu_model

    @classmethod
    def is_available(cls) -> bool:
        if not poptorch_importable():
            return False
        return bool(import_poptorch().ipuHardwareIsAvailable(1))

    @classmethod
    def unavailable_reason(cls) -> str:
        if not poptorch_importable():
            return MISSING_POPTORCH
        return "hardware 'ipu': poptorch is installed but poptorch.ipuHardwareIsAvailable() found no IPU"

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")  # poptorch takes host tensors and streams them to the IPU

    def tier_capacities(self) -> dict[str, int]:
        from .profiles import IPU_GC200
        host = min(IPU_GC200.memory["host"] * self.num_ipus, _ram()[0])
        return {"device": SRAM_PER_IPU * self.num_ipus, "host": host, "disk": disk_capacity()}

    def profile(self):
        from .profiles import IPU_GC200
        return IPU_GC200

    def options(self):
        """``poptorch.Options`` for this backend's settings."""
        pt = self.poptorch
        opts = pt.Options()
        opts.deviceIterations(self.device_iterations)
        opts.Training.gradientAccumulation(self.gradient_accumulation)
        if self.activations_off_chip:
            opts.TensorLocations.setActivationLocation(
                pt.TensorLocationSettings().useOnChipStorage(False))
        if self.available_memory_proportion is not None:
            p = float(self.available_memory_proportion)
            if not 0.0 < p <= 1.0:
                raise ValueError(f"available_memory_proportion must be in (0, 1], got {p}")
            opts.setAvailableMemoryProportion({f"IPU{i}": p for i in range(self.num_ipus)})
        opts.useIpuModel(self.use_ipu_model)
        return opts

    def training_model(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                       loss_fn: Callable[[Tensor, Tensor], Tensor], segment: int | None = None):
        """Compile ``model`` for training: calling the result with ``(inputs [T, B, ...],
        targets)`` runs one step (forward, backward, optimizer) and returns
        ``(outputs [T, B, ...], loss)``. ``segment``: steps between recomputation
        checkpoints (None: ~sqrt(T))."""
        step = IPUTrainStep(model, loss_fn, segment, self.poptorch.recomputationCheckpoint)
        return self.poptorch.trainingModel(step, options=self.options(), optimizer=optimizer)


class IPUTrainStep(nn.Module):
    """The module poptorch compiles: the model unrolled in segments with a recomputation
    checkpoint on the state between segments, and the loss (poptorch needs it inside)."""

    def __init__(self, model: nn.Module, loss_fn, segment: int | None, checkpoint):
        super().__init__()
        self.model, self.loss_fn, self.segment, self._checkpoint = model, loss_fn, segment, checkpoint
        if hasattr(model, "fused"):
            model.fused = False  # PopART differentiates the plain step ops

    def forward(self, inputs: Tensor, targets: Tensor):
        T = inputs.shape[0]
        seg = self.segment or max(1, int(math.ceil(math.sqrt(T))))
        state = self.model.init_state(inputs.shape[1])
        outs = []
        for t0 in range(0, T, seg):
            if t0 > 0:
                state = state_map(self._checkpoint, state)
            state, y = self.model.chunk(state, inputs[t0:t0 + seg])
            outs.append(y)
        outputs = torch.cat(outs, 0)
        logits = self.model.logits(outputs) if hasattr(self.model, "logits") else outputs
        return outputs, self.loss_fn(logits, targets)
