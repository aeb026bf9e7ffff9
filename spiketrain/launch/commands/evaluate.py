"""``spiketrain evaluate RUN_DIR``: test metrics of a trained run, without training."""
from __future__ import annotations

import argparse
import json


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "evaluate", help="test metrics of a trained run (no training)",
        description="Load RUN_DIR/config.yaml and the weights of RUN_DIR/snapshot.pt and print "
                    "the task's test metrics. --set changes the data (or anything else) first: "
                    "a new data.dt without data.T keeps the sample duration. The model runs as "
                    "trained; to move it to another time step use 'spiketrain adapt'.",
        epilog="example: spiketrain evaluate runs/shd --set data.n_test=512")
    p.add_argument("run_dir", help="run folder of 'spiketrain train' or 'spiketrain adapt'")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value by dotted key (repeatable), e.g. "
                        "--set data.test_path=other.h5")
    p.add_argument("--batch-size", type=int, default=None, help="default: trainer.batch_size")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p


def evaluate_run(run_dir, overrides=(), batch_size=None) -> dict:
    """``{"test_loss": ..., "test_<metric>": ..., "samples": n}`` of a trained run."""
    from ...trainer import evaluate, make_loader
    from ..build import build_data
    from ..config import ConfigError
    from ._trained import load_trained, run_config

    from ...trainer.storage import fetch_run, is_uri
    if is_uri(run_dir):   # a run on storage (s3://...): its files fetched to a stage folder
        run_dir = fetch_run(run_dir)
    cfg, _ = run_config(run_dir, list(overrides))
    model, _ = load_trained(run_dir, cfg)
    _, test = build_data(cfg)
    if test is None:
        raise ConfigError("the data config has no test set (data.n_test: 0 or no "
                          "data.test_path); set one, e.g. --set data.n_test=256")
    loader = make_loader(test, batch_size or cfg.trainer.batch_size, shuffle=False,
                         **({"sparse": True} if getattr(cfg.data, "sparse", False) else {}))
    ev = evaluate(model, loader, task=cfg.task.build())
    row = {"test_loss": float(ev.loss)}
    row.update({f"test_{k}": float(v) for k, v in ev.metrics.compute().items()})
    row["samples"] = len(test)
    return row


def run(args: argparse.Namespace) -> int:
    row = evaluate_run(args.run_dir, args.overrides, args.batch_size)
    if args.json:
        print(json.dumps(row))
        return 0
    parts = [f"{k[5:]} {100 * v:.2f}%" if k in ("test_acc", "test_map", "test_map50")
             else f"{k[5:]} {v:.4g}" for k, v in row.items() if k.startswith("test_")]
    print(f"test ({row['samples']} samples): " + ", ".join(parts))
    return 0
