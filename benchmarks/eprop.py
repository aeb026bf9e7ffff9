"""e-prop vs BPTT: extra peak memory and seconds per training step over sequence length.

SHD shape: 700 inputs (2 % spike rate) -> 256 recurrent LIF -> 20 classes, batch 32, per-step
cross-entropy vs the label. Each (strategy, T) runs in a fresh process; "extra peak" is the
peak resident memory of one forward+backward minus the resident memory just before it
(model, inputs and targets already built; the kernel's peak mark is reset first), so it counts
what the strategy holds for the gradient. Time is the median of ``--repeats`` training steps
(forward + backward; one step above T = 1,000). BPTT runs where its saved activations fit
``--bptt-max-T``. A second table prints the cosine similarity of e-prop's gradients to BPTT's
per parameter for recurrent nets (approximate there).

    python benchmarks/eprop.py                         # T = 100 .. 100,000
    python benchmarks/eprop.py --T 100 1000 --repeats 3
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

import spiketrain as st

N_IN, HIDDEN, N_OUT, RATE = 700, 256, 20, 0.02


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _reset_peak() -> None:
    """Reset the kernel's peak-RSS mark (VmHWM) so building the inputs does not count."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _peak() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _step_ce(o_t, y_t):
    return F.cross_entropy(o_t, y_t)


def _inputs(T: int, B: int, seed: int = 0):
    """A sparse [T, B, 700] spike train built from indices (never dense)."""
    from spiketrain.hardware.spikes import SparseSpikes
    g = torch.Generator().manual_seed(seed)
    nnz = int(RATE * T * B * N_IN)
    times = torch.randint(0, T, (nnz,), generator=g).sort().values
    return SparseSpikes(times, torch.randint(0, B, (nnz,), generator=g),
                        torch.randint(0, N_IN, (nnz,), generator=g), (T, B, N_IN))


def one(strategy: str, T: int, B: int, repeats: int, chunk: int) -> dict:
    """Run in a child process: time and extra peak memory of one configuration."""
    torch.manual_seed(0)
    model = st.models.RSNN(N_IN, HIDDEN, N_OUT, neuron="lif")
    x = _inputs(T, B)
    labels = torch.randint(0, N_OUT, (B,))
    y = labels.unsqueeze(0).expand(T, B)
    if strategy == "bptt":
        x = x.dense()
    times, extra = [], 0
    for r in range(repeats):
        model.zero_grad(set_to_none=True)
        _reset_peak()
        base = _rss()
        t0 = time.perf_counter()
        if strategy == "eprop":
            loss = st.unroll(model, x, "eprop", step_loss=_step_ce, targets=y, chunk=chunk)
        else:
            out = st.unroll(model, x, "bptt")
            loss = sum(_step_ce(o, l) for o, l in zip(out.unbind(0), y.unbind(0)))
        loss.backward()
        times.append(time.perf_counter() - t0)
        if r == 0:
            extra = _peak() - base
            report = st.last_report().peak_bytes.get("device", 0)
        del loss
        if strategy == "bptt":
            del out
    return {"strategy": strategy, "T": T, "s": statistics.median(times), "extra": extra,
            "report": report}


def cosines(T: int, B: int, layers: int, neuron: str, surrogate: str) -> list[tuple]:
    """Cosine similarity of e-prop to BPTT gradients and their norm ratio, per parameter."""
    torch.manual_seed(1)
    model = st.models.RSNN(N_IN, HIDDEN, N_OUT, neuron=neuron, layers=layers, surrogate=surrogate)
    x = _inputs(T, B, seed=1).dense()
    y = torch.randint(0, N_OUT, (B,)).unsqueeze(0).expand(T, B)
    out = st.unroll(model, x, "bptt")
    loss = sum(_step_ce(o, l) for o, l in zip(out.unbind(0), y.unbind(0)))
    gb = torch.autograd.grad(loss, list(model.parameters()))
    loss = st.unroll(model, x, "eprop", step_loss=_step_ce, targets=y)
    ge = torch.autograd.grad(loss, list(model.parameters()))
    return [(n, float(F.cosine_similarity(a.flatten(), b.flatten(), 0)), float(a.norm() / b.norm()))
            for (n, _), a, b in zip(model.named_parameters(), gb, ge)]


def _child(args, strategy: str, T: int) -> dict | None:
    cmd = [sys.executable, __file__, "--one", strategy, str(T), "--B", str(args.B),
           "--repeats", str(args.repeats if T <= 1000 else 1), "--chunk", str(args.chunk),
           "--threads", str(args.threads)]
    # glibc's dynamic mmap threshold would keep freed chunk buffers in the heap, so peak RSS
    # would drift with the number of chunks; fixed thresholds return them to the OS and the
    # RSS then tracks live tensors (same setting for both strategies).
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="262144", MALLOC_TRIM_THRESHOLD_="262144")
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        print(f"  {strategy} T={T} failed: {p.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    return json.loads(p.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--T", type=int, nargs="+", default=[100, 1000, 10_000, 100_000])
    ap.add_argument("--B", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--chunk", type=int, default=50)
    ap.add_argument("--bptt-max-T", type=int, default=10_000)
    ap.add_argument("--cos-T", type=int, default=200, help="0: skip the cosine table")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: steadiest on a "
                    "shared machine)")
    ap.add_argument("--one", nargs=2, metavar=("STRATEGY", "T"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.one:
        print(json.dumps(one(args.one[0], int(args.one[1]), args.B, args.repeats, args.chunk)))
        return 0
    mib = 2 ** 20
    print(f"SHD shape {N_IN}->{HIDDEN}->{N_OUT} recurrent LIF, B={args.B}, input rate {RATE:.0%}, "
          f"chunk={args.chunk}, torch threads={torch.get_num_threads()}")
    print(f"{'T':>7} | {'eprop MiB':>9} {'(report)':>8} {'s/step':>8} {'ms/simstep':>10} | "
          f"{'bptt MiB':>9} {'(report)':>8} {'s/step':>8} {'ms/simstep':>10} | {'time ratio':>10}")
    rows = {}
    for T in args.T:
        e = _child(args, "eprop", T)
        b = _child(args, "bptt", T) if T <= args.bptt_max_T else None
        rows[T] = (e, b)

        def cols(r):
            if r is None:
                return f"{'-':>9} {'-':>8} {'-':>8} {'-':>10}"
            return (f"{r['extra'] / mib:9.1f} {r['report'] / mib:8.1f} {r['s']:8.3f} "
                    f"{1000 * r['s'] / r['T']:10.3f}")
        ratio = f"{e['s'] / b['s']:10.2f}" if e and b else f"{'-':>10}"
        print(f"{T:>7} | {cols(e)} | {cols(b)} | {ratio}", flush=True)
    if 100 in rows and 10_000 in rows and rows[100][0] and rows[10_000][0]:
        m0, m1 = rows[100][0]["extra"], rows[10_000][0]["extra"]
        print(f"eprop extra memory T=10,000 / T=100: {m1 / m0:.3f} (target <= 1.10)")
    if 1000 in rows and all(rows[1000]):
        e, b = rows[1000]
        print(f"eprop / bptt seconds per simulated step at T=1,000: {e['s'] / b['s']:.2f} "
              f"(target <= 1.00)")
    if args.cos_T <= 0:
        return 0
    print(f"\ncosine(eprop, bptt) per parameter [|bptt| / |eprop|], recurrent nets, "
          f"T={args.cos_T}, B={args.B}")
    for surrogate in ("fast_sigmoid", "superspike"):
        for neuron, layers in (("lif", 1), ("alif", 1), ("lif", 2)):
            cs = cosines(args.cos_T, args.B, layers, neuron, surrogate)
            print(f"  {surrogate:12s} {neuron} x{layers}: " +
                  ", ".join(f"{n.replace('layers.', 'L')}={c:.3f} [{r:.2g}]" for n, c, r in cs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
