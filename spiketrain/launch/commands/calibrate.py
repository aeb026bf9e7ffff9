"""``spiketrain calibrate CONFIG --from RUN_DIR``: adapt a trained model to the nonlinear
gain-cell attention without retraining (:mod:`spiketrain.models.gaincell.calibrate`)."""
from __future__ import annotations

import argparse
import datetime as _dt
import itertools
import json
import math
import time
from pathlib import Path
from typing import Callable

import yaml

from ..config import ConfigError, load_config

REFERENCE_KINDS = ("softmax", "linear_gaincell")
CALIBRATION_TOKENS = 16384   # the paper calibrates on one batch of 16 sequences of 1024 tokens


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "calibrate", help="adapt a trained gaincell_gpt to the nonlinear gain-cell attention",
        description="Load the model of a finished run (softmax or linear_gaincell attention), "
                    "record its scalers' per-head statistics over training batches, switch to "
                    "the nonlinear gaincell attention and match those statistics on one fixed "
                    "batch by adjusting the scalers (a, b) only; optionally fine-tune. Writes a "
                    "new run folder (config.yaml, snapshot.pt, calibration.json) and prints "
                    "the test perplexity before and after.",
        epilog="example: spiketrain calibrate configs/gaincell_lm.yaml --from runs/gc-linear "
               "--out runs/gc-calibrated")
    p.add_argument("config", help="the YAML config the run was trained with")
    p.add_argument("--from", dest="source", required=True, metavar="RUN_DIR",
                   help="run folder (or snapshot.pt) of the trained reference model")
    p.add_argument("--out", metavar="DIR", help="new run folder (default "
                   "runs/<config>-calibrated-<time>)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value (repeatable)")
    p.add_argument("--kind", default="gaincell", help="attention to adapt to (default gaincell)")
    p.add_argument("--reference", default=None, choices=REFERENCE_KINDS,
                   help="attention the run was trained with (default: model.attention)")
    p.add_argument("--stats-batches", type=int, default=16,
                   help="training batches the reference runs over to record its statistics")
    p.add_argument("--batch-size", type=int, default=None,
                   help="samples per batch (default trainer.batch_size)")
    p.add_argument("--calibration-batch", type=int, default=None,
                   help="samples in the fixed calibration batch (default: the samples that hold "
                        f"--calibration-tokens, at least --batch-size)")
    p.add_argument("--calibration-tokens", type=int, default=CALIBRATION_TOKENS,
                   help="tokens in the calibration batch when --calibration-batch is not given "
                        "(default %(default)s, the paper's 16 sequences of 1024)")
    p.add_argument("--max-iters", type=int, default=100, help="calibration iterations (100)")
    p.add_argument("--threshold", type=float, default=1e-4,
                   help="stop when every statistic is this close (1e-4)")
    p.add_argument("--eval-batches", type=int, default=0,
                   help="test batches for the perplexities (0: the whole test set)")
    p.add_argument("--finetune-steps", type=int, default=0,
                   help="optimizer steps of fine-tuning after calibration (0: none)")
    p.add_argument("--finetune-lr", type=float, default=None,
                   help="fine-tuning learning rate (default trainer.lr)")
    p.add_argument("--quiet", action="store_true", help="no per-iteration lines")
    return p


def perplexity(model, task, loader, n_batches: int = 0, device=None) -> float:
    """The task's ``ppl`` of ``model`` on ``loader`` (first ``n_batches``; 0: all)."""
    from ...trainer.loop import evaluate

    batches = itertools.islice(loader, n_batches) if n_batches else loader
    res = evaluate(model, batches, task=task, device=device)
    values = res.metrics.compute() if res.metrics is not None else {}
    return float(values.get("ppl", math.exp(res.loss) if res.count else math.nan))


def adapt(model, train, test, task, *, kind: str = "gaincell", reference: str | None = None,
          batch_size: int = 16, stats_batches: int = 16, max_iters: int = 100,
          threshold: float = 1e-4, eval_batches: int = 0, finetune_steps: int = 0,
          finetune_lr: float = 1e-3, strategy=None, seed: int = 0,
          calibration_batch: int | None = None, calibration_tokens: int = CALIBRATION_TOKENS,
          log: Callable[[str], None] | None = print) -> dict:
    """The whole adaptation of a trained reference ``model`` (in place): perplexity of the
    reference, of the converted model before calibration, after calibration alone, and
    after ``finetune_steps`` of fine-tuning. Returns those numbers and the calibration
    report. ``train``/``test`` are datasets (``test`` None: perplexities on ``train``);
    ``calibration_batch``: samples in the fixed calibration batch (default: enough samples to
    hold ``calibration_tokens``, at least ``batch_size``, at most the training set)."""
    import torch

    from ...data import SpikeLoader
    from ...models.gaincell.calibrate import calibrate, reference_stats

    reference = reference or getattr(model, "attention", None)
    if reference not in REFERENCE_KINDS:
        raise ValueError(f"calibration starts from a model trained with {' or '.join(REFERENCE_KINDS)}"
                         f" attention, this one has {reference!r}; pass --reference")
    if kind == reference:
        raise ValueError(f"--kind {kind} is the reference's own attention; nothing to adapt")
    say = log or (lambda s: None)
    device = next(model.parameters()).device
    eval_set = test if test is not None else train

    def ppl():     # a fresh loader each time: the same first batches (a loader resumes)
        loader = SpikeLoader(eval_set, batch_size, shuffle=False)
        return perplexity(model, task, loader, eval_batches, device)

    model.set_attention(reference)
    out: dict = {"reference": reference, "kind": kind, "ppl_reference": ppl()}
    stats_loader = SpikeLoader(train, batch_size, shuffle=True, seed=seed)
    xs = [task.split(b)[0].to(device) for b in itertools.islice(stats_loader, stats_batches)]
    t0 = time.perf_counter()
    targets = reference_stats(model, xs)
    if calibration_batch is None:
        steps = xs[0].shape[0] if xs else task.split(next(iter(SpikeLoader(train, 1))))[0].shape[0]
        calibration_batch = min(len(train), max(batch_size, math.ceil(calibration_tokens / steps)))
    x_cal, y_cal = task.split(next(iter(SpikeLoader(train, calibration_batch, shuffle=True,
                                                     seed=seed + 1))))
    x_cal, y_cal = x_cal.to(device), task.to(y_cal, device)
    model.set_attention(kind)
    out["ppl_converted"] = ppl()

    def cal_loss(m):
        with torch.no_grad():
            return float(task.loss(m, m(x_cal), y_cal))

    res = calibrate(model, x_cal, targets, kind=kind, threshold=threshold, max_iters=max_iters,
                    loss_fn=cal_loss, log=say)
    out["calibration_seconds"] = time.perf_counter() - t0
    out["ppl_calibrated"] = ppl()
    out["calibration"] = res.as_dict()
    if finetune_steps:
        out["finetune_train_loss"] = finetune(model, train, task, finetune_steps, finetune_lr,
                                              batch_size, strategy, seed)
        out["ppl_finetuned"] = ppl()
        out["finetune_steps"] = finetune_steps
    gap = out["ppl_converted"] - out["ppl_reference"]
    out["gap_closed"] = (out["ppl_converted"] - out["ppl_calibrated"]) / gap if gap > 0 else math.nan
    return out


def finetune(model, train, task, steps: int, lr: float, batch_size: int, strategy=None,
             seed: int = 0) -> float:
    """``steps`` AdamW steps of ordinary training (the task's loss, ``strategy`` unroll);
    returns the mean training loss."""
    import torch

    from ...data import SpikeLoader
    from ...trainer.loop import train_epoch

    loader = SpikeLoader(train, batch_size, shuffle=True, seed=seed + 2)
    batches = itertools.islice(itertools.chain.from_iterable(itertools.repeat(loader)), steps)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    res = train_epoch(model, batches, opt, strategy or "bptt", task=task, clip_grad=1.0,
                      device=next(model.parameters()).device)
    return res.loss


def _table(out: dict) -> str:
    rows = [(f"reference ({out['reference']})", out["ppl_reference"]),
            (f"{out['kind']}, converted", out["ppl_converted"]),
            (f"{out['kind']}, calibrated", out["ppl_calibrated"])]
    if "ppl_finetuned" in out:
        rows.append((f"{out['kind']}, + {out['finetune_steps']} fine-tune steps",
                     out["ppl_finetuned"]))
    lines = [f"{'model':40}{'test ppl':>10}"] + [f"{n:40}{v:>10.3f}" for n, v in rows]
    cal = out["calibration"]
    lines.append(f"calibration: {cal['iterations']} iterations, "
                 f"{'converged' if cal['converged'] else 'not converged'} (largest errors: std "
                 f"{cal['std_error']:.1e}, mean {cal['mean_error']:.1e}); gap closed by "
                 f"calibration alone: {100 * out['gap_closed']:.1f}%")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    import torch

    from ...hardware import get_backend
    from ...trainer import seed_everything
    from ...trainer.snapshot import load_snapshot, save_snapshot, snapshot_path
    from ..build import build_data, build_model

    cfg = load_config(args.config, args.overrides)
    if not snapshot_path(args.source).exists():
        raise ConfigError(f"--from {args.source}: no snapshot there "
                          f"({snapshot_path(args.source)} missing); pass the run folder of a "
                          f"finished 'spiketrain train'")
    seed_everything(cfg.trainer.seed, cfg.trainer.deterministic)
    if cfg.trainer.threads:
        torch.set_num_threads(int(cfg.trainer.threads))
    device = get_backend(cfg.hardware).device
    model = build_model(cfg)
    for name in ("set_attention", "scaler_stats", "scalers"):
        if not hasattr(model, name):
            raise ConfigError(f"model {cfg.model.target!r} has no {name}(); calibrate needs a "
                              f"gaincell_gpt model")
    load_snapshot(args.source, model, restore_rng_state=False, map_location=device)
    model.to(device)
    train, test = build_data(cfg)
    task = cfg.task.build()
    out = adapt(model, train, test, task, kind=args.kind, reference=args.reference,
                batch_size=args.batch_size or cfg.trainer.batch_size,
                stats_batches=args.stats_batches, max_iters=args.max_iters,
                threshold=args.threshold, eval_batches=args.eval_batches,
                finetune_steps=args.finetune_steps, finetune_lr=args.finetune_lr or cfg.trainer.lr,
                strategy=cfg.strategy.build(), seed=cfg.trainer.seed,
                calibration_batch=args.calibration_batch,
                calibration_tokens=args.calibration_tokens,
                log=None if args.quiet else print)
    out["source"] = str(args.source)
    out_dir = Path(args.out or Path("runs") / f"{cfg.stem}-calibrated-"
                   f"{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}")
    out_dir.mkdir(parents=True, exist_ok=True)
    raw = cfg.to_dict()
    raw["model"] = dict(raw["model"], attention=args.kind)
    (out_dir / "config.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    save_snapshot(out_dir, model, None, epoch=-1, global_step=0, epoch_done=True,
                  extra={"metrics": [], "calibration": json.loads(json.dumps(out))})
    (out_dir / "calibration.json").write_text(json.dumps(out, indent=1))
    print(_table(out))
    print(f"run folder: {out_dir} (config.yaml with model.attention: {args.kind}, snapshot.pt; "
          f"fine-tune with: spiketrain train {out_dir / 'config.yaml'} --resume {out_dir})")
    return 0
