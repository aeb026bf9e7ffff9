"""Seconds per training step and extra peak memory: spiketrain vs a plain PyTorch loop.

SHD shape (RSNN 700 -> 256 -> 20, one recurrent LIF layer), batch 32, input spike rate 2%,
T in {100, 300, 1000, 3000}. One training step = forward over T steps, cross-entropy of the
readout, backward, Adam update. The plain loop is the same model written the usual way (a
Python loop over time, per-step input projection, a surrogate-spike autograd Function) and
gets the same weights; the script checks that both compute the same loss and gradients.

Timing: median of ``--repeats`` steps, the two implementations alternating within one process
(so machine load hits both alike), after one warm-up step each. Memory: bytes autograd saves
for backward (spiketrain's report; the plain loop counted with the same hook) and the peak RSS
growth of a fresh process during its first step (``--no-rss`` skips those subprocesses).

    python benchmarks/step_time.py [--T 100 300 1000 3000] [--repeats 3] [--threads 1]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import threading
import time

import torch
import torch.nn.functional as F

import spiketrain as st
from spiketrain.hardware import format_size
from spiketrain.models import SURROGATE_GRADS
from spiketrain.strategies.bptt import SavedBytes

N_IN, HIDDEN, N_OUT, BATCH, RATE = 700, 256, 20, 32, 0.02
MODEL = dict(n_in=N_IN, hidden=HIDDEN, n_out=N_OUT, dt=10.0, surrogate="superspike",
             readout="mean")


# ----------------------------------------------------------------------------- the plain loop
class _Spike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale):
        ctx.save_for_backward(x)
        ctx.scale = scale
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g / (1.0 + ctx.scale * x.abs()) ** 2, None        # SuperSpike


class PlainRSNN(torch.nn.Module):
    """The RSNN of the benchmark, written as a plain PyTorch loop."""

    def __init__(self, ref):
        super().__init__()
        layer = ref.layers[0]
        self.w_in = torch.nn.Parameter(layer.w_in.detach().clone())
        self.w_rec = torch.nn.Parameter(layer.w_rec.detach().clone())
        self.w_out = torch.nn.Parameter(ref.w_out.detach().clone())
        self.b_out = torch.nn.Parameter(ref.b_out.detach().clone())
        self.beta, self.kappa, self.thr = layer.beta, ref.kappa, layer.threshold
        self.scale = SURROGATE_GRADS["superspike"][1]

    def forward(self, x):
        B = x.shape[1]
        v = x.new_zeros(B, self.w_in.shape[0])
        z = torch.zeros_like(v)
        o = x.new_zeros(B, self.w_out.shape[0])
        outs = []
        for x_t in x.unbind(0):
            v = self.beta * v + x_t @ self.w_in.t() + z @ self.w_rec.t() - self.thr * z
            z = _Spike.apply((v - self.thr) / self.thr, self.scale)
            o = self.kappa * o + z @ self.w_out.t() + self.b_out
            outs.append(o)
        return torch.stack(outs).mean(0)                               # readout "mean"


# ----------------------------------------------------------------------------- one step
def make_models(seed=0):
    torch.manual_seed(seed)
    ref = st.models.RSNN(**MODEL)
    return ref, PlainRSNN(ref)


def make_batch(T, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.empty(T, BATCH, N_IN).bernoulli_(RATE, generator=g)   # no temporaries
    y = torch.randint(0, N_OUT, (BATCH,), generator=g)
    return x, y


def step_spiketrain(model, opt, x, y):
    out = st.unroll(model, x, strategy="bptt")
    loss = F.cross_entropy(model.logits(out), y)
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return float(loss.detach()), st.last_report().peak_bytes.get("device", 0)


def step_plain(model, opt, x, y):
    params = list(model.parameters())
    with SavedBytes(exclude=params + [x]) as saved:
        logits = model(x)
    loss = F.cross_entropy(logits, y)
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return float(loss.detach()), saved.bytes


STEPS = {"spiketrain": step_spiketrain, "plain": step_plain}


def check_same_math(T=100):
    """Both implementations: same loss and gradients for the same weights and batch."""
    ref, plain = make_models()
    x, y = make_batch(T)
    F.cross_entropy(ref.logits(st.unroll(ref, x)), y).backward()
    F.cross_entropy(plain(x), y).backward()
    pairs = [(ref.layers[0].w_in, plain.w_in), (ref.layers[0].w_rec, plain.w_rec),
             (ref.w_out, plain.w_out), (ref.b_out, plain.b_out)]
    return max(float((a.grad - b.grad).abs().max() / b.grad.abs().max().clamp_min(1e-12))
               for a, b in pairs)


# ----------------------------------------------------------------------------- RSS (subprocess)
def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def rss_child(impl: str, T: int) -> dict:
    """In a fresh process: peak RSS growth during the first training step at length T
    (after a tiny step that pays one-time initialisation)."""
    ref, plain = make_models()
    model = ref if impl == "spiketrain" else plain
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    STEPS[impl](model, opt, *make_batch(8, seed=2))   # one-time initialisation off the books
    x, y = make_batch(T)
    for p in model.parameters():           # optimizer state exists before the step
        p.grad = torch.zeros_like(p)
    opt.step()
    opt.zero_grad(set_to_none=True)
    base, peak, stop = _rss(), [0], threading.Event()

    def poll():
        while not stop.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.0005)

    th = threading.Thread(target=poll, daemon=True)
    th.start()
    STEPS[impl](model, opt, x, y)
    stop.set()
    th.join()
    return {"rss_delta": max(peak[0], _rss()) - base}


def measure_rss(impl: str, T: int, threads: int) -> int | None:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", impl, str(T), "--threads",
           str(threads)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if r.returncode != 0:
        print(r.stderr, file=sys.stderr)
        return None
    return json.loads(r.stdout.strip().splitlines()[-1])["rss_delta"]


# ----------------------------------------------------------------------------- main
def bench_T(T: int, repeats: int) -> dict:
    ref, plain = make_models()
    models = {"spiketrain": ref, "plain": plain}
    opts = {k: torch.optim.Adam(m.parameters(), lr=1e-3) for k, m in models.items()}
    x, y = make_batch(T)
    times = {k: [] for k in models}
    cpu = {k: [] for k in models}
    saved = {}
    for k in models:                                   # warm-up
        _, saved[k] = STEPS[k](models[k], opts[k], x, y)
    for _ in range(repeats):
        for k in models:                               # alternate: same load for both
            t0, c0 = time.perf_counter(), time.process_time()
            STEPS[k](models[k], opts[k], x, y)
            times[k].append(time.perf_counter() - t0)
            cpu[k].append(time.process_time() - c0)
    return {"T": T, **{f"{k}_s": statistics.median(v) for k, v in times.items()},
            **{f"{k}_cpu": statistics.median(v) for k, v in cpu.items()},
            **{f"{k}_saved": saved[k] for k in models}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--T", type=int, nargs="+", default=[100, 300, 1000, 3000])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    ap.add_argument("--no-rss", action="store_true", help="skip the RSS subprocesses")
    ap.add_argument("--child", nargs=2, metavar=("IMPL", "T"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(rss_child(args.child[0], int(args.child[1]))))
        return 0

    print(f"RSNN {N_IN}->{HIDDEN}->{N_OUT} LIF, batch {BATCH}, input rate {RATE:.0%}, "
          f"torch {torch.__version__}, {args.threads} thread(s), median of {args.repeats}")
    print(f"same math: max relative gradient difference spiketrain vs plain = "
          f"{check_same_math():.1e}")
    hdr = (f"{'T':>5} | {'spiketrain s/step':>17} | {'plain s/step':>12} | {'ratio':>5} | "
           f"{'cpu s/step st / plain':>21} | "
           f"{'saved (report)':>14} | {'saved plain':>11} | {'RSS +':>9} | {'RSS + plain':>11}")
    print(hdr)
    print("-" * len(hdr))
    for T in args.T:
        r = bench_T(T, args.repeats)
        if args.no_rss:
            rss = {"spiketrain": None, "plain": None}
        else:
            rss = {k: measure_rss(k, T, args.threads) for k in ("spiketrain", "plain")}
        fmt = lambda n: "n/a" if n is None else format_size(n)
        ratio = r["spiketrain_s"] / r["plain_s"] if r["plain_s"] > 0 else math.nan
        cpu = f"{r['spiketrain_cpu']:.4f} / {r['plain_cpu']:.4f}"
        print(f"{T:>5} | {r['spiketrain_s']:>17.4f} | {r['plain_s']:>12.4f} | {ratio:>5.2f} | "
              f"{cpu:>21} | "
              f"{fmt(r['spiketrain_saved']):>14} | {fmt(r['plain_saved']):>11} | "
              f"{fmt(rss['spiketrain']):>9} | {fmt(rss['plain']):>11}", flush=True)
    print("ratio = spiketrain / plain wall seconds per step (< 1: spiketrain faster); cpu = "
          "process CPU seconds per step (less sensitive to other jobs on the machine)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
