"""A DeepSpeed optimizer's state in a snapshot, ZeRO partitions included.

Under ZeRO 1/2 each rank holds only its partition of the fp32 master weights and of the
optimizer state (momentum, Adam moments). A snapshot is one file written by rank 0, so
:func:`optimizer_state` gathers every rank's partition to rank 0 (a collective: every rank
calls it at the same point), as DeepSpeed's own per-rank ``state_dict()`` gives it, and
:func:`load_optimizer_state` hands each rank its own entry through DeepSpeed's
``load_state_dict(state_dict_list, load_from_fp32_weights=True)``: the same files
``engine.save_checkpoint`` writes as ``zero_pp_rank_*_optim_states.pt``, kept in the one
atomic snapshot instead, so a snapshot is complete or absent, never partly written.

The snapshot is read with ``torch.load(weights_only=True)``: DeepSpeed's loss-scaler object
and stage enum are stored as plain values and rebuilt on load; the parameter-slice mappings
(only used by DeepSpeed's universal checkpoints) are left out.
"""
from __future__ import annotations

import copy
from typing import Any

import torch

# keys of DeepSpeed's ZeRO / BF16 optimizer state_dict (deepspeed.checkpoint.constants)
LOSS_SCALER, ZERO_STAGE, CLIP_GRAD = "loss_scaler", "zero_stage", "clip_grad"
DROPPED = ("param_slice_mappings", "universal_checkpoint_info")


def is_partitioned(opt) -> bool:
    """Whether ``opt`` (``engine.optimizer``) holds only this rank's partition of the state:
    DeepSpeed's ZeRO 1/2 optimizer, or its bf16 optimizer (which partitions the same way)."""
    return hasattr(opt, "single_partition_of_fp32_groups") or \
        hasattr(opt, "fp32_groups_flat_partition")


def _world() -> tuple[int, int]:
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _plain(sd: dict) -> dict:
    """DeepSpeed's per-rank state dict with only tensors and plain Python values."""
    out: dict[str, Any] = {}
    for key, value in sd.items():
        if key in DROPPED:
            continue
        if key == LOSS_SCALER:
            value = {k: v for k, v in vars(value).items()
                     if isinstance(v, (bool, int, float, str)) or v is None}
        elif key == ZERO_STAGE:
            value = int(value)
        out[key] = value
    return out


def _deepspeed(sd: dict, opt) -> dict:
    """Inverse of :func:`_plain` on the optimizer ``opt`` that will load ``sd``."""
    out = dict(sd)
    if LOSS_SCALER in out and hasattr(opt, "loss_scaler"):
        scaler = copy.copy(opt.loss_scaler)
        for k, v in out[LOSS_SCALER].items():
            setattr(scaler, k, v)
        out[LOSS_SCALER] = scaler
    if ZERO_STAGE in out:
        from deepspeed.runtime.zero.config import ZeroStageEnum
        out[ZERO_STAGE] = ZeroStageEnum(out[ZERO_STAGE])
    return out


def optimizer_state(engine) -> dict | None:
    """The optimizer state of a DeepSpeed ``engine`` for a snapshot.

    Partitioned (ZeRO 1/2, bf16): a collective over the process group; returns
    ``{"engine": "deepspeed", "partitioned": True, "world_size": W, "ranks": [W per-rank
    states]}`` on rank 0 and ``None`` on the other ranks. Otherwise (ZeRO 0, fp32) every rank
    holds the same state and gets ``{"partitioned": False, "state": ...}`` without
    communicating.
    """
    opt = engine.optimizer
    rank, world = _world()
    head = {"engine": "deepspeed", "world_size": world,
            "zero_stage": int(engine.zero_optimization_stage())}
    if not is_partitioned(opt):
        sd = opt.state_dict()
        plain = sd if isinstance(opt, torch.optim.Optimizer) else _plain(sd)
        return {**head, "partitioned": False, "state": plain}
    mine = _plain(opt.state_dict())
    if world == 1:
        ranks = [mine]
    else:
        import torch.distributed as dist
        ranks = [None] * world if rank == 0 else None
        dist.gather_object(mine, ranks, dst=0)
        if rank != 0:
            return None
    return {**head, "partitioned": True, "ranks": ranks}


def load_optimizer_state(engine, state: dict) -> None:
    """Restore what :func:`optimizer_state` returned into ``engine`` (every rank reads the
    whole dict and takes its own partition; no communication). Call after the model's weights
    are loaded. A partitioned state saved on another number of workers (the data loader
    refuses that resume too: its order would differ), or one partitioned where this engine
    does not partition it (or the reverse), is refused with a ``ValueError`` that says what
    to resume with."""
    opt = engine.optimizer
    _, world = _world()
    if state.get("engine") != "deepspeed":
        raise ValueError("the snapshot's optimizer state was not written by a DeepSpeed engine; "
                         "resume with the engine the run was started with")
    if bool(state["partitioned"]) != is_partitioned(opt):
        have = "partitioned (ZeRO 1/2 or bf16)" if state["partitioned"] else "not partitioned"
        raise ValueError(f"the snapshot's DeepSpeed optimizer state is {have} (ZeRO stage "
                         f"{state.get('zero_stage')}); resume with the deepspeed.zero_stage and "
                         f"dtype the run was started with")
    if not state["partitioned"]:
        sd = state["state"]
        opt.load_state_dict(sd if isinstance(opt, torch.optim.Optimizer) else _deepspeed(sd, opt))
        return
    if int(state["world_size"]) != world:
        raise ValueError(f"the snapshot holds the partitioned optimizer state of "
                         f"{state['world_size']} workers, this run has {world}; resume with "
                         f"{state['world_size']} workers")
    # the gradient clipping stays this run's (an option that may change on resume)
    ranks = [{k: v for k, v in _deepspeed(sd, opt).items() if k != CLIP_GRAD}
             for sd in state["ranks"]]
    # the fp32 master partitions from the snapshot (exact also under bf16), then the base
    # optimizer's state of this rank's partition
    opt.load_state_dict(ranks, load_optimizer_states=True, load_from_fp32_weights=True)

