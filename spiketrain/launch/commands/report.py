"""``spiketrain report RUN_DIR``: print a sweep's table and re-draw its plots."""
from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "report", help="print a sweep's result table and re-draw its plots",
        description="Print RUN_DIR/sweep.parquet as a table and re-draw memory_vs_T.png and "
                    "time_vs_T.png from it.",
        epilog="example: spiketrain report runs/seqlen_sweep")
    p.add_argument("run_dir", help="the 'out' folder of a 'spiketrain sweep' run")
    p.add_argument("--x", default="data.T", help="grid key on the x axis (default data.T)")
    p.add_argument("--no-plots", action="store_true", help="only print the table")
    return p


def run(args: argparse.Namespace) -> int:
    from ..sweep_report import format_table, plot_sweep, read_table

    rows = read_table(args.run_dir)
    print(format_table(rows))
    if not args.no_plots:
        for p in plot_sweep(args.run_dir, x=args.x):
            print(f"plot: {p}")
    return 0
