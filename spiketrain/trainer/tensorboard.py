"""Optional TensorBoard logging (``trainer.tensorboard: true``): every epoch's metrics row as
scalars in ``OUT/tensorboard/`` for users who watch runs live (``tensorboard --logdir OUT``).

The writer is ``tensorboardX`` (installed with Ray) or, failing that, torch's
``torch.utils.tensorboard``. Only rank 0 writes. A run on a storage URI logs into its local
stage folder; the event files are copied to ``URI/tensorboard/`` after each epoch.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

TB_DIR = "tensorboard"


def _writer_class():
    try:
        from tensorboardX import SummaryWriter
        return SummaryWriter
    except ImportError:
        pass
    try:
        from torch.utils.tensorboard import SummaryWriter
        return SummaryWriter
    except ImportError:
        raise ImportError("trainer.tensorboard needs tensorboardX (pip install tensorboardX) "
                          "or tensorboard for torch's writer (pip install tensorboard)") from None


def scalars(row: dict) -> dict[str, float]:
    """The numeric entries of a metrics row as TensorBoard tags: ``train/loss``,
    ``test/acc``, ``memory/peak_bytes_device``, ``time/sec_per_step``, ``lr``."""
    out: dict[str, float] = {}
    for k, v in row.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or k in ("epoch",):
            continue
        if isinstance(v, float) and math.isnan(v):
            continue
        if k.startswith(("train_", "test_")):
            split, name = k.split("_", 1)
            tag = f"{split}/{name}"
        elif k.startswith("peak_bytes_"):
            tag = f"memory/{k}"
        elif k in ("sec_per_step", "epoch_seconds"):
            tag = f"time/{k}"
        else:
            tag = k
        out[tag] = float(v)
    return out


class TensorBoardLogger:
    """An epoch callback ``logger(trainer, row)`` writing ``row`` at step ``global_step``."""

    def __init__(self, log_dir: str | os.PathLike | None = None, mirror: Any = None):
        """``log_dir`` default: the trainer's ``out_dir/tensorboard``; ``mirror`` default: a
        :class:`~spiketrain.trainer.storage.RunStorage` of the trainer's ``out_uri``, if any."""
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.mirror = mirror
        self._writer = None

    def __call__(self, trainer, row: dict) -> None:
        if not getattr(trainer, "is_main", True):
            return
        if self._writer is None:
            if self.log_dir is None:
                self.log_dir = Path(trainer.out_dir) / TB_DIR
            if self.mirror is None and getattr(trainer, "out_uri", None):
                from .storage import RunStorage
                self.mirror = RunStorage(trainer.out_uri)
            self.log_dir.mkdir(parents=True, exist_ok=True)
            self._writer = _writer_class()(str(self.log_dir))
        step = int(row.get("global_step", row.get("epoch", 0)))
        for tag, v in scalars(row).items():
            self._writer.add_scalar(tag, v, step)
        self._writer.flush()
        if self.mirror is not None:
            for f in self.log_dir.iterdir():
                if f.is_file():
                    self.mirror.upload(f, f"{TB_DIR}/{f.name}")

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __getstate__(self):   # travels to Ray workers without an open writer
        d = dict(self.__dict__)
        d["_writer"], d["mirror"] = None, None if self.mirror is None else d["mirror"]
        return d


def read_scalars(log_dir: str | os.PathLike) -> dict[str, list[tuple[int, float]]]:
    """``{tag: [(step, value), ...]}`` from the event files in ``log_dir`` (for checks)."""
    from tensorboardX.proto import event_pb2

    out: dict[str, list[tuple[int, float]]] = {}
    for f in sorted(Path(log_dir).glob("events.out.tfevents.*")):
        data = f.read_bytes()
        i = 0
        while i + 12 <= len(data):
            n = int.from_bytes(data[i:i + 8], "little")
            ev = event_pb2.Event()
            ev.ParseFromString(data[i + 12:i + 12 + n])
            i += 12 + n + 4
            for v in ev.summary.value:
                out.setdefault(v.tag, []).append((int(ev.step), float(v.simple_value)))
    return out
