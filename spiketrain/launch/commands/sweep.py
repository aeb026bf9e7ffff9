"""``spiketrain sweep SWEEP.yaml``: a Ray Tune grid of short training runs -> Parquet + plots."""
from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "sweep", help="run a grid of trials (e.g. sequence length x strategy) on Ray Tune",
        description="Run every combination of a sweep file's grid as a short training run on Ray "
                    "Tune; write OUT/sweep.parquet (one row per trial: seconds per step, peak "
                    "bytes per tier, peak RSS, recomputed steps, loss, status) and the log-log "
                    "plots OUT/memory_vs_T.png and OUT/time_vs_T.png.",
        epilog="example: spiketrain sweep configs/seqlen_sweep.yaml --set trainer.epochs=1")
    p.add_argument("sweep", help="sweep file (e.g. configs/seqlen_sweep.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value in every trial (repeatable)")
    p.add_argument("--out", metavar="DIR", help="results folder (default: the file's 'out')")
    p.add_argument("--address", help="join a running Ray cluster (default: $RAY_ADDRESS, else "
                   "an embedded local Ray for the duration of the sweep)")
    p.add_argument("--max-concurrent", type=int, help="trials at once (default: the file's "
                   "max_concurrent, 1)")
    return p


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..config import read_yaml
    from ..sweep import load_sweep, run_sweep
    from ..sweep_report import PLOTS, format_table

    raw = read_yaml(args.sweep)
    if isinstance(raw, dict) and "train_dt" in raw:   # a time-resolution sweep (dt_sweep.yaml)
        from ..dt_heatmap import main as dt_main
        return int(dt_main([str(args.sweep)]) or 0)
    spec = load_sweep(args.sweep, args.overrides)
    if args.out:
        spec.out = Path(args.out)
    if args.max_concurrent:
        spec.max_concurrent = args.max_concurrent
    print(f"sweep: {len(spec.trials())} trials over {', '.join(spec.grid)} -> {spec.out}", flush=True)
    rows = run_sweep(spec, address=args.address)
    print(format_table(rows))
    print(f"table: {spec.out / 'sweep.parquet'}; plots: "
          f"{', '.join(str(spec.out / p) for p in PLOTS)}")
    return 0
