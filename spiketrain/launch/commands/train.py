"""``spiketrain train CONFIG``: train from a YAML config (local, or Ray workers if configured)."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import yaml

from ..config import ConfigError, load_config


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "train", help="train a model from a YAML config",
        description="Train a model from a YAML config. Writes OUT/metrics.parquet (one row per "
                    "epoch), OUT/snapshot.pt (for --resume) and OUT/config.yaml.",
        epilog="example: spiketrain train configs/shd_rsnn.yaml --set trainer.epochs=3 "
               "--set model.hidden=128")
    p.add_argument("config", help="YAML config file (e.g. configs/shd_rsnn.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value by dotted key, value read as YAML "
                        "(repeatable), e.g. --set trainer.lr=0.002")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue the run in RUN_DIR from its last snapshot (writes there "
                        "unless --out is given)")
    p.add_argument("--strategy", metavar="NAME", help="memory strategy (replaces strategy: in "
                   "the config), e.g. bptt, checkpoint, eprop")
    p.add_argument("--out", metavar="DIR", help="run folder (default runs/<config>-<time>)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    dispatch = _ray_dispatch()
    if dispatch is not None:
        dispatch.add_ray_arguments(p)
    return p


def _ray_dispatch():
    """The Ray launcher (``--workers``, ``--address``, ...) when it is installed, else None."""
    try:
        from .. import ray_dispatch
    except ImportError:
        return None
    return ray_dispatch


def run(args: argparse.Namespace) -> int:
    from ...trainer.snapshot import snapshot_path
    from ..build import build_trainer

    # --strategy NAME replaces the config's strategy first, so --set strategy.* options
    # given on the command line apply to the named strategy
    overrides = ([f"strategy={args.strategy}"] if args.strategy else []) + list(args.overrides)
    if args.no_progress:
        overrides.append("trainer.progress=false")
    dispatch = _ray_dispatch()          # registers its config sections before loading
    cfg = load_config(args.config, overrides)
    if args.resume and not snapshot_path(args.resume).exists():
        raise ConfigError(f"--resume {args.resume}: no snapshot there ({snapshot_path(args.resume)} "
                          f"missing); pass the run folder of an earlier 'spiketrain train'")
    out = args.out or args.resume
    trainer = build_trainer(cfg, out_dir=out, resume=args.resume)
    out_dir = trainer.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    print(f"run folder: {out_dir}  (model {cfg.model.target}, strategy {cfg.strategy.name}, "
          f"{cfg.trainer.epochs} epochs)", flush=True)
    t0 = time.perf_counter()
    row = dispatch.fit(trainer, args) if dispatch is not None else trainer.fit()
    dt = time.perf_counter() - t0
    if row:
        main = trainer.task.main_metric
        value = row.get(f"test_{main}", float("nan")) if main else float("nan")
        shown = (f"{100 * value:.1f}%" if main in ("acc", "map", "map50") else f"{value:.4g}")
        what = {"acc": "accuracy"}.get(main, main)
        head = f"final test {what} {shown} " if main else "final "
        print(f"{head}(test loss {row.get('test_loss', float('nan')):.4f}) after epoch "
              f"{row['epoch'] + 1}, {dt:.1f} s; metrics: {Path(out_dir) / 'metrics.parquet'}",
              flush=True)
    return 0
