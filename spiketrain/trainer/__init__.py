"""Trainer loop, snapshots (resume), Parquet metrics; pieces reusable by distributed workers."""
from .loop import EpochResult, batch_loss, evaluate, logits_of, step_ce, train_epoch
from .metrics import MetricsLog, format_row, read_metrics
from .optim import OPTIMIZERS, build_optimizer
from .snapshot import capture_rng, load_snapshot, restore_rng, save_snapshot, snapshot_path
from .trainer import Trainer, make_loader, seed_everything

__all__ = ["Trainer", "EpochResult", "batch_loss", "evaluate", "logits_of", "step_ce",
           "train_epoch", "MetricsLog", "format_row", "read_metrics", "OPTIMIZERS",
           "build_optimizer", "capture_rng", "load_snapshot", "restore_rng", "save_snapshot",
           "snapshot_path", "make_loader", "seed_everything"]
