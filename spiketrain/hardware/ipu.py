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

The model runs its plain step ops there (``model.set_fast_paths(False)``): PopART
differentiates the traced forward graph itself, so the CPU/GPU fused autograd node is not used.

The Trainer reaches the IPU through :meth:`IPUBackend.training_step`: it compiles one
training step (forward under the configured memory strategy mapped to recomputation
checkpoints and off-chip activations, the task's loss, backward, optimizer) and calls it for
every batch instead of its own forward/backward/update.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor, nn

from torch.utils import _pytree as pytree

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

    def plan(self, strategy) -> tuple[int | None, bool]:
        """How a memory strategy maps onto the compiled step: ``(segment, off_chip)``.

        ``segment`` is the number of steps between recomputation checkpoints (0: none, keep
        every activation, as ``bptt``; None: ~sqrt(T)); ``off_chip`` places activations in
        streaming memory (tier ``host``). Strategies say what they are through their options
        (``segment``, ``tier``) and ``online``; an online strategy (e-prop) has no compiled
        form and is refused.
        """
        if getattr(strategy, "online", False):
            raise ValueError(f"strategy {strategy.name!r} keeps eligibility traces in its own "
                             f"loop and has no compiled IPU form; use bptt, checkpoint, double, "
                             f"revolve or offload with hardware: ipu")
        name = getattr(strategy, "name", "bptt")
        seg = getattr(strategy, "segment", None)
        seg = int(seg) if isinstance(seg, int) and seg > 0 else None
        if name == "bptt":
            seg = 0
        slow = getattr(strategy, "tier", None) in ("host", "disk") or name in ("offload", "double")
        return seg, bool(self.activations_off_chip or slow)

    def training_step(self, model: nn.Module, optimizer: torch.optim.Optimizer, task, strategy):
        """The Trainer's per-batch step on the IPU: ``step(inputs [T, B, ...], targets) ->
        (loss, preds)``; compiled by poptorch on the first call."""
        segment, off_chip = self.plan(strategy)
        saved = self.activations_off_chip
        self.activations_off_chip = off_chip
        try:
            compiled = self.poptorch.trainingModel(
                IPUTrainStep(model, task, segment, self.poptorch.recomputationCheckpoint),
                options=self.options(), optimizer=optimizer)
        finally:
            self.activations_off_chip = saved
        return IPUStep(compiled, task, model)

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
    checkpoint on the state between segments, and the loss (poptorch needs it inside).

    ``loss``: a Task (its ``loss(model, outputs, targets)``) or a plain function
    ``loss(logits_or_outputs, targets)``. ``segment``: steps between checkpoints (0: none;
    None: ~sqrt(T)).
    """

    def __init__(self, model: nn.Module, loss, segment: int | None, checkpoint):
        super().__init__()
        self.model, self.loss, self.segment, self._checkpoint = model, loss, segment, checkpoint
        if callable(getattr(model, "set_fast_paths", None)):
            model.set_fast_paths(False)  # PopART differentiates the plain step ops
        elif hasattr(model, "fused"):
            model.fused = False

    def forward(self, inputs: Tensor, targets):
        T = inputs.shape[0]
        if self.segment == 0:
            seg = T
        else:
            seg = self.segment or max(1, int(math.ceil(math.sqrt(T))))
        state = self.model.init_state(inputs.shape[1])
        outs = []
        for t0 in range(0, T, seg):
            if t0 > 0:
                state = pytree.tree_map(self._checkpoint, state)
            state, y = self.model.chunk(state, inputs[t0:t0 + seg])
            outs.append(y)
        outputs = torch.cat(outs, 0) if len(outs) > 1 else outs[0]
        if hasattr(self.loss, "loss") and hasattr(self.loss, "predict"):   # a Task
            return outputs, self.loss.loss(self.model, outputs, targets)
        logits = self.model.logits(outputs) if hasattr(self.model, "logits") else outputs
        return outputs, self.loss(logits, targets)


class IPUStep:
    """Callable the Trainer uses per batch: runs the compiled step and returns
    ``(loss, preds)``; :meth:`sync` copies the weights back to the host model (before a
    snapshot or an evaluation)."""

    def __init__(self, compiled, task, model: nn.Module):
        self.compiled, self.task, self.model = compiled, task, model

    def __call__(self, inputs, targets):
        if not isinstance(inputs, Tensor):   # a sparse spike train: the IPU streams dense
            inputs = inputs.dense()
        outputs, loss = self.compiled(inputs, targets)
        with torch.no_grad():
            preds = self.task.predict(self.model, outputs.detach())
        return loss.detach(), preds

    def sync(self) -> None:
        copy = getattr(self.compiled, "copyWeightsToHost", None)
        if callable(copy):
            copy()
