"""Sparse vs dense spike kernel: where does the sparse path stop paying off?

``spike_linear(x [T, B, n_in], W [n_out, n_in])`` with binary ``x`` at a range of spike
rates, timed for inference (forward) and training (forward + weight gradient), sparse
(embedding-bag over active inputs / sparse COO weight gradient) beside dense (matmul), both
paths alternating in one process, median of ``--repeats``. Prints the table and the
crossover rate: the highest rate at which sparse training is still faster. That crossover is
what ``spiketrain.hardware.sparse.SPARSE_MAX_RATE`` (``mode="auto"``) is set from.

    python benchmarks/kernels.py [--T 1000] [--B 32] [--n-in 700] [--n-out 256] [--threads 1]
"""
from __future__ import annotations

import argparse
import sys

import torch

from spiketrain.hardware import sparse
from spiketrain.hardware.profiles import median_time as timed
from spiketrain.hardware.sparse import spike_linear

RATES = [0.0, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--T", type=int, default=1000)
    ap.add_argument("--B", type=int, default=32)
    ap.add_argument("--n-in", type=int, default=700)
    ap.add_argument("--n-out", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rates", type=float, nargs="+", default=RATES)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    g = torch.Generator().manual_seed(0)
    w = torch.randn(a.n_out, a.n_in, generator=g, requires_grad=True)
    print(f"spike_linear [{a.T}, {a.B}, {a.n_in}] -> {a.n_out}, {a.threads} thread(s), "
          f"median of {a.repeats} (ms); current SPARSE_MAX_RATE = {sparse.SPARSE_MAX_RATE}")
    print("| spike rate | dense fwd | sparse fwd | fwd speed-up | dense fwd+grad | "
          "sparse fwd+grad | train speed-up |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    crossover = 0.0
    for rate in a.rates:
        x = (torch.rand(a.T, a.B, a.n_in, generator=g) < rate).float()
        gy = torch.randn(a.T, a.B, a.n_out, generator=g)
        res = {}
        for mode in ("dense", "sparse"):
            with torch.no_grad():
                res[mode, "fwd"] = timed(lambda: spike_linear(x, w, mode), a.repeats)

            def train():
                w.grad = None
                spike_linear(x, w, mode).backward(gy)

            res[mode, "train"] = timed(train, a.repeats)
        sf = res["dense", "fwd"] / res["sparse", "fwd"]
        st = res["dense", "train"] / res["sparse", "train"]
        if st > 1.0:
            crossover = max(crossover, rate)
        print(f"| {rate:.3f} | {res['dense', 'fwd'] * 1e3:.1f} | {res['sparse', 'fwd'] * 1e3:.1f} | "
              f"{sf:.2f}x | {res['dense', 'train'] * 1e3:.1f} | {res['sparse', 'train'] * 1e3:.1f} | "
              f"{st:.2f}x |", flush=True)
    print(f"\ncrossover (highest rate where sparse training is faster): {crossover}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
