"""``spiketrain report RUN [RUN ...]``: a training run's per-epoch table and learning curves
(several runs overlaid; local folders or storage URIs), or a sweep's table and plots."""
from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "report", help="print a sweep's result table and re-draw its plots",
        description="Print RUN_DIR/sweep.parquet as a table and re-draw memory_vs_T.png and "
                    "time_vs_T.png from it.",
        epilog="example: spiketrain report runs/seqlen_sweep")
    p.add_argument("run_dir", nargs="+", help="run folder(s) or storage URI(s) (s3://...) of "
                   "'spiketrain train' runs (curves overlaid), or the 'out' folder of a "
                   "'spiketrain sweep' run")
    p.add_argument("--plots", metavar="DIR", help="where a training-run report writes its "
                   "PNGs (default: the run folder of one local run, else ./report-<time>)")
    p.add_argument("--x", default="data.T", help="grid key on the x axis (default data.T)")
    p.add_argument("--no-plots", action="store_true", help="only print the table")
    return p


def run(args: argparse.Namespace) -> int:
    from ..checks import ConfigError
    from ..run_report import is_training_run, report_runs
    from ..sweep_report import format_table, plot_sweep, read_table

    if all(is_training_run(d) for d in args.run_dir):
        text, paths = report_runs(args.run_dir, plots=args.plots, draw=not args.no_plots)
        print(text)
        if not args.no_plots:
            paths = list(paths) + _detection_pictures(args.run_dir, args.plots)
        for p in paths:
            print(f"plot: {p}")
        return 0
    if len(args.run_dir) > 1:
        bad = [d for d in args.run_dir if not is_training_run(d)]
        raise ConfigError(f"{bad[0]}: not a training run (no metrics.parquet); several "
                          f"folders are overlaid only for 'spiketrain train' runs")
    args.run_dir = args.run_dir[0]
    rows = read_table(args.run_dir)
    print(format_table(rows))
    if not args.no_plots:
        for p in plot_sweep(args.run_dir, x=args.x):
            print(f"plot: {p}")
    return 0


def _detection_pictures(run_dirs, plots) -> list:
    """Predicted and ground-truth boxes over event frames of the test set, for each local
    detection run (``boxes.png`` next to its curves)."""
    from pathlib import Path

    import yaml

    out = []
    for d in run_dirs:
        cfg = Path(d) / "config.yaml"
        if "://" in str(d) or not cfg.is_file():
            continue
        raw = yaml.safe_load(cfg.read_text()) or {}
        task = raw.get("task")
        task = task.get("name") if isinstance(task, dict) else task
        kind = (raw.get("data") or {}).get("kind")
        if task != "detection" and kind not in ("events", "gen1"):
            continue
        from ..report_boxes import draw_detections
        where = Path(plots) if plots else Path(d)
        where.mkdir(parents=True, exist_ok=True)
        name = "boxes.png" if len(run_dirs) == 1 else f"boxes-{Path(d).name}.png"
        out.append(draw_detections(d, out_png=where / name))
    return out
