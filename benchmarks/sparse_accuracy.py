"""Test accuracy of the sparse backward beside the exact gradient, trained by the same CLI.

Trains ``configs/shd_rsnn.yaml`` on synthetic SHD-format data with shared bands
(``data.n_bands``) with the same seed and epochs: exact (``model.sparse_backward`` unset)
and ``model.sparse_backward: CUT`` for each cut (``model.keep_membrane: true`` for all),
per seed, then prints each run's final test accuracy, loss and seconds per epoch from its
``metrics.parquet``, and per cut the mean difference to exact over the seeds.

    python benchmarks/sparse_accuracy.py [--cut 0.5 1.0] [--seeds 0 1] [--epochs 3]
                                         [--hidden 256] [--n-bands 6] [--set KEY=VALUE ...]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

import pyarrow.parquet as pq

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def train(out: str, sets: list[str]) -> dict:
    cmd = [sys.executable, "-m", "spiketrain", "train", os.path.join(ROOT, "configs", "shd_rsnn.yaml"),
           "--no-ray", "--no-progress", "--out", out]
    for s in sets:
        cmd += ["--set", s]
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    rows = pq.read_table(os.path.join(out, "metrics.parquet")).to_pylist()
    ep = [r for r in rows if r.get("test_acc") is not None] or rows
    return ep[-1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cut", type=float, nargs="+", default=[0.5])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--n-bands", type=int, default=6)
    ap.add_argument("--set", action="append", default=[], dest="sets")
    a = ap.parse_args(argv)
    common = [f"trainer.epochs={a.epochs}", f"model.hidden={a.hidden}",
              f"data.n_bands={a.n_bands}", "model.keep_membrane=true"] + a.sets
    res = {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in a.seeds:
            runs = [("exact", [])] + [(f"sparse {c}", [f"model.sparse_backward={c}"]) for c in a.cut]
            for name, extra in runs:
                out = os.path.join(tmp, f"{name.replace(' ', '_')}-{seed}")
                res[(name, seed)] = train(out, common + extra + [f"trainer.seed={seed}"])
    print(f"synthetic SHD-format, n_bands {a.n_bands}, hidden {a.hidden}, {a.epochs} epochs")
    print("| backward | seed | test accuracy | test loss | train loss | s/epoch |")
    print("|---|---:|---:|---:|---:|---:|")
    for (name, seed), r in res.items():
        f = (lambda k: f"{r[k]:.4f}" if isinstance(r.get(k), float) else "-")  # noqa: B023
        print(f"| {name} | {seed} | {f('test_acc')} | {f('test_loss')} | {f('train_loss')} | "
              f"{f('epoch_seconds')} |")
    for c in a.cut:
        d = [res[(f"sparse {c}", s)].get("test_acc", float("nan")) - res[("exact", s)].get("test_acc", float("nan"))
             for s in a.seeds]
        print(f"cut {c}: accuracy difference (sparse - exact) per seed "
              + ", ".join(f"{100 * v:+.1f}" for v in d) + f"; mean {100 * sum(d) / len(d):+.1f} points")
    return 0


if __name__ == "__main__":
    sys.exit(main())
