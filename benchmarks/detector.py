"""Hybrid detector: seconds per training step and backbone memory against the number of bins.

For each number of time bins T (default 10, 50, 200) and strategy (bptt, checkpoint,
double) one model (attention bridge built for T bins) trains on the same seeded batch of
event histograms ``[T, B, 2, H, W]``: moving bars and blobs whose edges fire events plus
background noise (counts per bin, both polarities). A training step = unroll the backbone
under the strategy, bridge + ANN + head once, detection loss, backward, Adam step. Reported
per cell: the median step time over ``--repeats`` steps, the strategy report's peak bytes
(``device``: what the backbone keeps for backward; ``disk``/``host``: double's slow tier)
and, for bptt, the backbone spike rate per block and the share of a step's time spent in
the backbone, the bridge and the ANN part + head (each timed forward + backward on its
own, inputs detached). Ratios compare cells measured in the same run.

    python benchmarks/detector.py                           # T in {10, 50, 200}
    python benchmarks/detector.py --bins 10 50 --repeats 5 --batch 4 --size 64
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import spiketrain as st  # noqa: E402
from spiketrain.hardware.units import format_size  # noqa: E402
from spiketrain.models.detector import HybridDetector  # noqa: E402


def make_batch(T: int, B: int, size: int, seed: int = 0):
    """Event histograms ``[T, B, 2, size, size]`` of one moving box per sample (ON events
    on the leading edge, OFF on the trailing one) plus 1 % noise, and its final boxes."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(T, B, 2, size, size, generator=g) < 0.01).float()
    targets = []
    for b in range(B):
        w, h = [int(v) for v in torch.randint(size // 6, size // 3, (2,), generator=g)]
        x0, y0 = [float(v) for v in torch.randint(0, size - max(w, h) - 8, (2,), generator=g)]
        vx, vy = [float(v) for v in (torch.rand(2, generator=g) * 16 / max(T, 1))]
        for t in range(T):
            xa, ya = int(x0 + vx * t), int(y0 + vy * t)
            x[t, b, 1, ya:ya + h, min(size - 1, xa + w)] += 1      # leading edges ON
            x[t, b, 1, min(size - 1, ya + h), xa:xa + w] += 1
            x[t, b, 0, ya:ya + h, xa] += 1                           # trailing edges OFF
            x[t, b, 0, ya, xa:xa + w] += 1
        targets.append(torch.tensor([[b % 2, x0 + vx * (T - 1), y0 + vy * (T - 1), w, h]]))
    return x, targets


def build(T: int, size: int, width: float) -> HybridDetector:
    torch.manual_seed(0)
    return HybridDetector(input_size=(size, size), bins=T, width=width, head_depth=1)


def train_step(model, opt, x, targets, strategy: str) -> float:
    t0 = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    out = st.unroll(model, x, strategy=strategy)
    loss = model.detection_loss(model.detect(out), targets)
    loss.backward()
    opt.step()
    return time.perf_counter() - t0


def timed(fn, repeats: int) -> float:
    fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def shares(model, x, targets, repeats: int) -> dict[str, float]:
    """Seconds of forward + backward of the backbone (bptt), the bridge and ANN + head."""
    with torch.no_grad():
        out = st.unroll(model, x, strategy="bptt")
        dense = model.bridge(out)

    def backbone():
        y = st.unroll(model, x, strategy="bptt")
        y.backward(torch.ones_like(y))

    def bridge():
        s = out.clone().requires_grad_(True)
        model.bridge(s).sum().backward()

    def head():
        d = dense.clone().requires_grad_(True)
        model.detection_loss(model.head(model.ann(d)), targets).backward()

    return {k: timed(f, repeats) for k, f in (("backbone", backbone), ("bridge", bridge),
                                               ("head", head))}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bins", type=int, nargs="+", default=[10, 50, 200])
    ap.add_argument("--strategies", nargs="+", default=["bptt", "checkpoint", "double"])
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--size", type=int, default=64, help="input grid H = W (pixels)")
    ap.add_argument("--width", type=float, default=0.125, help="multiplier of the paper's widths")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"hybrid detector: input {args.size}x{args.size}, batch {args.batch}, width "
          f"x{args.width} (backbone {[round(c * args.width) for c in (64, 128, 256, 256)]}), "
          f"attention bridge, median of {args.repeats} steps, {args.threads} thread(s)")
    rows = []
    for T in args.bins:
        x, targets = make_batch(T, args.batch, args.size)
        for name in args.strategies:
            model = build(T, args.size, args.width)
            opt = torch.optim.Adam(model.parameters(), lr=1e-3)
            train_step(model, opt, x, targets, name)  # warm-up
            ts, peaks = [], []
            for _ in range(args.repeats):
                ts.append(train_step(model, opt, x, targets, name))
                peaks.append(dict(st.last_report().peak_bytes))
            rep = st.last_report()
            row = {"T": T, "strategy": name, "s": statistics.median(ts),
                   "device": statistics.median(p.get("device", 0) for p in peaks),
                   "slow": max((v for k, v in peaks[-1].items() if k != "device"), default=0),
                   "recomputed": rep.recomputed_steps, "schedule": rep.schedule or ""}
            if name == "bptt":
                row["rates"] = model.spike_rates(x)
                row["shares"] = shares(model, x, targets, args.repeats)
            rows.append(row)
            print(f"  T={T:4d} {name:10s} {row['s']:7.3f} s/step  device {format_size(int(row['device'])):>10s}"
                  f"  slow {format_size(int(row['slow'])):>10s}  recomputed {row['recomputed']}", flush=True)
    print()
    print("| bins | strategy | s/step | x bptt time | backbone device peak | x bptt memory | slow tier | recomputed steps |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    ref = {r["T"]: r for r in rows if r["strategy"] == "bptt"}
    for r in rows:
        b = ref.get(r["T"])
        tx = f"{r['s'] / b['s']:.2f}" if b else "-"
        mx = f"{r['device'] / b['device']:.3f}" if b and b["device"] else "-"
        print(f"| {r['T']} | {r['strategy']} | {r['s']:.3f} | {tx} | {format_size(int(r['device']))} | {mx} "
              f"| {format_size(int(r['slow']))} | {r['recomputed']} |")
    print()
    print("| bins | spike rate per block (1..4) | backbone | bridge | ANN + head |")
    print("|---:|---|---:|---:|---:|")
    for T, r in ref.items():
        sh = r["shares"]
        tot = sum(sh.values())
        print(f"| {T} | {' / '.join(f'{v:.3f}' for v in r['rates'])} | "
              + " | ".join(f"{100 * sh[k] / tot:.0f} % ({sh[k]:.3f} s)" for k in ("backbone", "bridge", "head"))
              + " |")
    print()
    for T, b in ref.items():
        d = next((r for r in rows if r["T"] == T and r["strategy"] == "double"), None)
        if d and b["device"]:
            line = (f"T={T}: double keeps {d['device'] / b['device']:.3f} of bptt's backbone device "
                    f"memory at {d['s'] / b['s']:.2f}x its time")
            if T == 200:
                ok = d["device"] <= b["device"] / 5 and d["s"] <= 1.3 * b["s"]
                line += f" (target at 200 bins: <= 0.2 at <= 1.3x): {'met' if ok else 'NOT met'}"
            print(line)


if __name__ == "__main__":
    main()
