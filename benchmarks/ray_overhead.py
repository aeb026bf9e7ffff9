"""Ray overhead: wall time of the same training job in-process, on 1 and on 2 Ray Train workers.

    python benchmarks/ray_overhead.py                  # ~60 s job, 2 repeats
    python benchmarks/ray_overhead.py --seconds 20 --repeats 3

The job is ``configs/shd_rsnn.yaml`` (synthetic SHD-format data) with the number of training
samples calibrated so the in-process run takes about ``--seconds``. Every mode runs the same
epochs over the same data (2 workers: each half of every batch). The Ray wall time counts
everything ``spiketrain train --workers N`` pays: starting the embedded local Ray, the worker
group, per-epoch reports with snapshots, and shutting Ray down. Modes are interleaved per repeat
so machine load hits them alike; the table shows medians and ratios to in-process.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.1")


def _trainer(overrides, out):
    from spiketrain.launch.build import build_trainer
    from spiketrain.launch.config import load_config

    cfg = load_config(ROOT / "configs" / "shd_rsnn.yaml",
                      ["trainer.progress=false", "data.n_test=0"] + overrides)
    return build_trainer(cfg, out_dir=out, verbose=False)


def run_mode(mode: str, overrides: list[str], tmp: Path) -> float:
    """Wall seconds of one run (``inproc``, ``ray1`` or ``ray2``), data build excluded."""
    import ray

    from spiketrain.trainer import ray_train

    out = tmp / f"{mode}-{time.time_ns()}"
    trainer = _trainer(overrides, out)
    t0 = time.perf_counter()
    if mode == "inproc":
        trainer.fit()
    else:
        n = int(mode[-1])
        ray_train.fit(trainer, workers=n)  # embedded local Ray, started and shut down here
    dt = time.perf_counter() - t0
    assert not ray.is_initialized()
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="in-process job length target")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args()
    base = [f"trainer.epochs={args.epochs}", "trainer.batch_size=32"] + args.overrides
    tmp = Path(tempfile.mkdtemp(prefix="ray_overhead-"))
    # calibrate: seconds per sample in-process, then size the training set
    probe = 128
    for _ in range(2):  # the first run pays imports and data generation
        t = run_mode("inproc", base + [f"data.n_train={probe}", "trainer.epochs=1"], tmp)
    n_train = max(64, int(round(args.seconds / args.epochs / (t / probe) / 32)) * 32)
    job = base + [f"data.n_train={n_train}"]
    _trainer(job, tmp / "warm")  # generate and cache the data set once
    print(f"job: shd_rsnn.yaml, {args.epochs} epochs x {n_train} samples (batch 32), "
          f"cores={os.cpu_count()}, repeats={args.repeats}", flush=True)
    times: dict[str, list[float]] = {"inproc": [], "ray1": [], "ray2": []}
    for r in range(args.repeats):
        for mode in times:
            times[mode].append(run_mode(mode, job, tmp))
            print(f"  repeat {r + 1} {mode}: {times[mode][-1]:.1f} s", flush=True)
    base_t = statistics.median(times["inproc"])
    names = {"inproc": "in-process", "ray1": "Ray, 1 worker", "ray2": "Ray, 2 workers"}
    print(f"\n| mode | wall s (median of {args.repeats}) | all runs | ratio to in-process |")
    print("|---|---:|---|---:|")
    for mode, ts in times.items():
        m = statistics.median(ts)
        print(f"| {names[mode]} | {m:.1f} | {', '.join(f'{x:.1f}' for x in ts)} | {m / base_t:.2f}x |")


if __name__ == "__main__":
    main()
