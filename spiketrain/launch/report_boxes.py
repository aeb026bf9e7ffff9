"""A picture of a detector's work: predicted and ground-truth boxes over event frames.

``draw_detections(run_dir, out_png="boxes.png")`` rebuilds the run's model and test data from
``RUN_DIR/config.yaml``, loads the weights of ``RUN_DIR/snapshot.pt``, runs a few test windows
and writes one PNG: per window the event frame (bins summed; ON red, OFF blue), the ground
truth (green, dashed) and the detections above ``conf`` (solid, labelled with class and score).
A model object and a dataset can be passed instead of a run folder.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

_CLASS_COLOURS = ("#ff9900", "#cc33ff", "#00cccc", "#996633")


def _from_run(run_dir: Path):
    from ..trainer.snapshot import load_snapshot
    from .build import build_data, build_model
    from .config import read_yaml, validate

    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{run_dir} has no config.yaml: not a run folder of "
                                f"'spiketrain train'")
    raw = read_yaml(cfg_path)
    # the picture needs the model, data and task only (engine sections such as deepspeed
    # are registered by modules this process may not have imported)
    cfg = validate({k: raw[k] for k in ("model", "data", "task", "strategy") if k in raw},
                   cfg_path)
    model = build_model(cfg)
    load_snapshot(run_dir, model, restore_rng_state=False)
    train, test = build_data(cfg)
    return model, (test if test is not None else train), cfg.task.build()


def event_frame(x: torch.Tensor) -> np.ndarray:
    """``[T, 2, H, W]`` counts of one window -> ``[H, W]`` ON minus OFF counts."""
    x = x.detach().to("cpu", torch.float32)
    return (x[:, 1] - x[:, 0]).sum(0).numpy()


def draw_detections(source: Any, dataset: Any = None, out_png: str | os.PathLike = "boxes.png",
                    indices: Sequence[int] | None = None, n: int = 4, conf: float = 0.3,
                    task: Any = None, class_names: Sequence[str] | None = None) -> Path:
    """Draw predicted and ground-truth boxes over event frames of ``dataset`` into ``out_png``.

    Args:
        source: a run folder (``config.yaml`` + ``snapshot.pt``; its test set is used unless
            ``dataset`` is given) or a detector model (``detect``/``decode``, needs ``dataset``).
        dataset: an event dataset with ``get_batch(indices) -> (x [T, B, 2, H, W], boxes)``.
        indices: the windows to draw (default: ``n`` spread evenly over the dataset).
        conf: draw detections scoring at least this.
        task: the task whose ``predict`` gives the boxes (default: ``detection``).
    Returns the path of the PNG.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    from ..trainer.tasks import get_task

    if isinstance(source, (str, os.PathLike)):
        model, run_data, run_task = _from_run(Path(source))
        dataset = dataset if dataset is not None else run_data
        task = task if task is not None else run_task
    else:
        model = source
        if dataset is None:
            raise ValueError("draw_detections(model, dataset, ...) needs the dataset to draw from")
    task = get_task(task if task is not None else "detection")
    if indices is None:
        indices = np.unique(np.linspace(0, len(dataset) - 1, min(n, len(dataset))).round()
                            .astype(int)).tolist()
    x, targets = dataset.get_batch(list(indices))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            preds = task.predict(model, model(x))
    finally:
        model.train(was_training)
    names = class_names or getattr(dataset, "class_names", None)
    cols = min(len(indices), 4)
    rows = -(-len(indices) // cols)
    H, W = x.shape[-2:]
    fig = Figure(figsize=(3.2 * cols * W / max(H, W) + 0.4, 3.2 * rows * H / max(H, W) + 0.6))
    FigureCanvasAgg(fig)
    for k, i in enumerate(indices):
        ax = fig.add_subplot(rows, cols, k + 1)
        frame = event_frame(x[:, k])
        lim = max(1.0, float(np.abs(frame).max()))
        ax.imshow(frame, cmap="bwr", vmin=-lim, vmax=lim, interpolation="nearest")
        for c, bx, by, bw, bh in targets[k].tolist():
            ax.add_patch(Rectangle((bx - 0.5, by - 0.5), bw, bh, fill=False, ec="#00aa00",
                                   lw=1.5, ls="--"))
        for x1, y1, x2, y2, s, c in preds[k].detach().cpu().tolist():
            if s < conf:
                continue
            colour = _CLASS_COLOURS[int(c) % len(_CLASS_COLOURS)]
            ax.add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False,
                                   ec=colour, lw=1.2))
            label = names[int(c)] if names and int(c) < len(names) else str(int(c))
            ax.text(x1, y1 - 1, f"{label} {s:.2f}", color=colour, fontsize=6, va="bottom")
        ax.set_title(f"window {i}: {len(targets[k])} true, "
                     f"{int((preds[k][:, 4] >= conf).sum()) if len(preds[k]) else 0} found",
                     fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"events (ON red, OFF blue), truth dashed green, detections >= {conf}",
                 fontsize=8)
    fig.tight_layout()
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=130)
    return out
