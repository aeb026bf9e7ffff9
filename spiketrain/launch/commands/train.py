"""``spiketrain train CONFIG``: train from a YAML config (local, or Ray workers if configured)."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

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
    p.add_argument("--out", metavar="DIR", help="run folder (default runs/<config>-<time>-<id>); "
                   "one that holds a run is refused unless --resume or --overwrite")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run in --out (its config, metrics and snapshot)")
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
    from .. import run_folder
    from ..build import build_trainer

    # --strategy NAME replaces the config's strategy first, so --set strategy.* options
    # given on the command line apply to the named strategy
    overrides = ([f"strategy={args.strategy}"] if args.strategy else []) + list(args.overrides)
    if args.no_progress:
        overrides.append("trainer.progress=false")
    if args.resume and args.overwrite:
        raise ConfigError("--resume continues a run and --overwrite replaces one: give only one")
    dispatch = _ray_dispatch()          # registers its config sections before loading
    cfg = load_config(args.config, overrides)
    cfg_dict = cfg.to_dict()
    from ..remote_run import localize, publish
    from ...trainer.storage import display
    out_uri = localize(args, cfg.trainer.out_dir)   # URIs -> local stage folders
    # everything is checked before the run folder is created or touched
    resume = run_folder.resume_dir(args.resume) if args.resume else None
    changes = run_folder.check_resume_config(resume, cfg_dict) if resume is not None else {}
    unique = not (args.out or resume is not None or cfg.trainer.out_dir)
    out = Path(args.out or resume or cfg.trainer.out_dir
               or run_folder.unique_run_dir(cfg.stem))
    same = resume is not None and out.resolve() == resume.resolve()
    run_folder.check_writable_dir(out, "--out")
    if not same and run_folder.holds_run(out) and not args.overwrite:
        run_folder.claim(out)       # raises: the folder holds a run
    trainer = build_trainer(cfg, out_dir=out, resume=resume)
    trainer.check()
    if resume is not None:
        trainer.check_resume()
    if dispatch is not None:
        dispatch.check(trainer, args)
    folder = run_folder.claim(out, overwrite=args.overwrite, resume=same, unique=unique)
    trainer.out_dir = out_dir = folder.path
    folder.write_config(cfg_dict)
    trainer.out_uri = out_uri   # metrics and snapshots copied there as written
    if getattr(args, "resume_uri", None):
        trainer.resume = args.resume_uri   # Ray workers on any node read it from there
    publish(out_uri, folder.path)
    what = f"{cfg.trainer.epochs} epochs"
    if resume is not None:
        what += f", resumed from {resume}" + (
            " with " + ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changes.items())
            if changes else "")
    print(f"run folder: {display(out_uri) if out_uri else out_dir}  "
          f"(model {cfg.model.target}, strategy {cfg.strategy.name}, "
          f"{what})", flush=True)
    t0 = time.perf_counter()
    metrics_at = (f"{display(out_uri)}/metrics.parquet" if out_uri
                  else Path(out_dir) / "metrics.parquet")
    try:
        row = dispatch.fit(trainer, args) if dispatch is not None else trainer.fit()
    except BaseException:
        folder.abandon()
        raise
    dt = time.perf_counter() - t0
    if row:
        main = trainer.task.main_metric
        value = row.get(f"test_{main}", float("nan")) if main else float("nan")
        shown = (f"{100 * value:.1f}%" if main in ("acc", "map", "map50") else f"{value:.4g}")
        what = {"acc": "accuracy"}.get(main, main)
        head = f"final test {what} {shown} " if main else "final "
        print(f"{head}(test loss {row.get('test_loss', float('nan')):.4f}) after epoch "
              f"{row['epoch'] + 1}, {dt:.1f} s; metrics: {metrics_at}",
              flush=True)
    return 0
