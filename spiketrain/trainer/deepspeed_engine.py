"""``engine: deepspeed``: the optimizer and its state handled by DeepSpeed (ZeRO stage 0-2,
optional CPU offload of the optimizer state), inside a Ray worker or a single process.

Runs on CPU too (DeepSpeed's CPU accelerator over gloo), in fp32 or bf16. fp16 needs a GPU.
The model keeps training through ordinary autograd: :class:`DeepSpeedEngine` gives the
``backward(loss)`` / ``step()`` pair that :func:`spiketrain.trainer.train_epoch` accepts,
and :meth:`DeepSpeedEngine.as_optimizer` an optimizer-shaped view for loops that call
``loss.backward()`` and ``optimizer.step()`` themselves.
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any

import torch

DTYPES = ("fp32", "bf16")


@dataclass
class DeepSpeedOptions:
    """``deepspeed:`` config section: ZeRO stage (0-2), CPU offload of optimizer state,
    parameter dtype (fp32 or bf16) and the per-worker micro batch size DeepSpeed logs."""

    zero_stage: int = 1
    offload_optimizer: bool = False
    dtype: str = "fp32"
    micro_batch_size: int = 1
    clip_grad: float = 0.0  # max global gradient norm; 0 = none (DeepSpeed's own default is 1)

    def __post_init__(self):
        if self.zero_stage not in (0, 1, 2):
            raise ValueError(f"deepspeed.zero_stage must be 0, 1 or 2, got {self.zero_stage}")
        if self.dtype not in DTYPES:
            raise ValueError(f"deepspeed.dtype must be one of {DTYPES}, got {self.dtype!r} "
                             f"(fp16 is GPU-only; use bf16)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_process_group() -> None:
    """A gloo process group of one when none exists (a run outside Ray Train)."""
    import torch.distributed as dist

    if dist.is_initialized():
        return
    for k, v in (("MASTER_ADDR", "127.0.0.1"), ("RANK", "0"), ("LOCAL_RANK", "0"),
                 ("WORLD_SIZE", "1")):
        os.environ.setdefault(k, v)
    os.environ.setdefault("MASTER_PORT", str(_free_port()))
    import deepspeed

    deepspeed.init_distributed(dist_backend="gloo" if not torch.cuda.is_available() else "nccl")


# DeepSpeed's default ZeRO bucket is 5e8 elements; on CPU each allocation of that size costs
# ~0.7 s (24 of them in a 4-step run). A bucket that holds every parameter is the same single
# bucket for small models (same reduction, same numbers) without the cost.
_DEFAULT_BUCKET = 500_000_000
_MIN_BUCKET = 1 << 16


def bucket_size(numel: int) -> int:
    """ZeRO reduce/all-gather bucket (elements) for a model of ``numel`` parameters."""
    return int(min(_DEFAULT_BUCKET, max(int(numel), _MIN_BUCKET)))


def ds_config(opts: DeepSpeedOptions, world_size: int = 1,
              numel: int = _DEFAULT_BUCKET) -> dict[str, Any]:
    """The DeepSpeed JSON config for ``opts`` (``numel``: the model's parameter count, which
    sizes the ZeRO buckets)."""
    zero: dict[str, Any] = {"stage": opts.zero_stage,
                            "reduce_bucket_size": bucket_size(numel),
                            "allgather_bucket_size": bucket_size(numel)}
    if opts.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": False}
    return {
        "train_micro_batch_size_per_gpu": int(opts.micro_batch_size),
        "gradient_accumulation_steps": 1,
        "gradient_clipping": float(opts.clip_grad or 0.0),
        "zero_optimization": zero,
        # a torch optimizer with offload (DeepSpeedCPUAdam would compile an extension first)
        "zero_force_ds_cpu_optimizer": False,
        "zero_allow_untested_optimizer": True,  # torch SGD / RMSprop under ZeRO
        "bf16": {"enabled": opts.dtype == "bf16"},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


class DeepSpeedEngine:
    """Wrap ``model`` and its torch ``optimizer`` in a DeepSpeed engine.

    ``engine.module`` is what forward runs through (a ``DeepSpeedEngine`` nn.Module whose
    ``.module`` is the model, so :func:`spiketrain.models.unwrap` finds it);
    ``backward(loss)`` reduces gradients over the process group; ``step()`` updates and
    zeroes them.
    """

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                 options: DeepSpeedOptions | dict | None = None):
        import deepspeed

        if isinstance(options, dict) or options is None:
            options = DeepSpeedOptions(**(options or {}))
        self.options = options
        ensure_process_group()
        self.module, self.optimizer, _, _ = deepspeed.initialize(
            model=model, optimizer=optimizer,
            config=ds_config(options, numel=sum(p.numel() for p in model.parameters())))

    def backward(self, loss: torch.Tensor) -> None:
        """Backward pass with DeepSpeed's gradient reduction."""
        self.module.backward(loss)

    def step(self) -> None:
        """Optimizer update (ZeRO-partitioned), then gradients zeroed."""
        self.module.step()

    def state_dict(self) -> dict | None:
        """Optimizer state for a snapshot (:func:`.deepspeed_state.optimizer_state`): under
        ZeRO 1/2 a collective that gathers every rank's partition to rank 0 (``None`` on the
        other ranks), so every rank must call it at the same point."""
        from .deepspeed_state import optimizer_state
        return optimizer_state(self.module)

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`'s result on every rank (each takes its partition)."""
        from .deepspeed_state import load_optimizer_state
        load_optimizer_state(self.module, state)

    def as_optimizer(self) -> "EngineOptimizer":
        """An optimizer-shaped view of this engine (see :class:`EngineOptimizer`)."""
        return EngineOptimizer(self)


class EngineOptimizer:
    """Optimizer-shaped view of a :class:`DeepSpeedEngine` for the Trainer's loop: ``step``
    runs the engine's update (which zeroes the gradients), ``param_groups`` are the live
    groups of the wrapped torch optimizer (learning rate changes reach it).

    Snapshots: :meth:`gather` is called on every rank before rank 0 writes a snapshot (ZeRO's
    partitioned state is collected there); :meth:`state_dict` then returns what was gathered.
    Without a gather, a partitioned state on several ranks is refused rather than written
    incomplete."""

    def __init__(self, engine: DeepSpeedEngine):
        self.engine = engine
        self._gathered: dict | None = None
        self._ready = False

    @property
    def param_groups(self) -> list[dict]:
        return self.engine.optimizer.param_groups

    def step(self):
        self.engine.step()

    def zero_grad(self, set_to_none: bool = True):
        pass  # the engine's step zeroes the gradients

    def gather(self) -> None:
        """Collect the optimizer state (collective under ZeRO 1/2: every rank calls it)."""
        self._gathered, self._ready = self.engine.state_dict(), True

    def state_dict(self) -> dict | None:
        if self._ready:
            state, self._gathered, self._ready = self._gathered, None, False
            return state
        import torch.distributed as dist

        from .deepspeed_state import is_partitioned
        if (is_partitioned(self.engine.optimizer) and dist.is_initialized()
                and dist.get_world_size() > 1):
            raise RuntimeError("a ZeRO-partitioned optimizer state must be gathered on every "
                               "rank (EngineOptimizer.gather) before rank 0 saves it")
        return self.engine.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.engine.load_state_dict(state)
