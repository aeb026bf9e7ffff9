"""e-prop vs BPTT: extra peak memory and seconds per training step over sequence length.

SHD shape: 700 inputs (2 % spike rate) -> 256 recurrent LIF -> 20 classes, batch 32, per-step
cross-entropy vs the label. Each (variant, T) runs in a fresh process; "extra peak" is the
peak resident memory of one forward+backward minus the resident memory just before it
(model, inputs and targets already built; the kernel's peak mark is reset first), so it counts
what the strategy holds for the gradient. Time is the median of ``--repeats`` training steps
(forward + backward; one step above T = 1,000), as CPU time (steadiest on a shared machine)
and wall time. e-prop keeps one strategy instance across the repeats, as a training loop
does (its one-time checks run in the first step). BPTT runs where its saved activations fit
``--bptt-max-T``.

Variants: ``eprop`` (the SHD LIF, compiled kernels, per-synapse trace of ``(e_v, ebar)``),
``eprop-fact`` (the same net with a LIF whose reset carries no gradient, defined below: its
input trace factorises, so only ``ebar`` is kept per synapse; that neuron is a custom layer,
so its Jacobians come from autograd and its forward from a Python loop) and ``bptt``.
A second table prints the cosine similarity of e-prop's gradients to BPTT's per parameter
for recurrent nets (approximate there).

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
from spiketrain.models import spike
from spiketrain.models import LIFLayer

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


class DetachResetLIF(LIFLayer):
    """LIF whose reset ``theta * z_{t-1}`` carries no gradient (a common SNN training
    choice): its e-prop input trace factorises."""

    def dynamics(self, h, current):
        v, z = h
        v = self.beta * v + current - self.threshold * z.detach()
        return (v, spike((v - self.threshold) / self.threshold, self.surrogate))


def _model(variant: str):
    torch.manual_seed(0)
    model = st.models.RSNN(N_IN, HIDDEN, N_OUT, neuron="lif")
    if variant == "eprop-fact":
        model.layers[0].__class__ = DetachResetLIF  # same weights and constants
    return model


def one(variant: str, T: int, B: int, repeats: int, chunk: int) -> dict:
    """Run in a child process: time and extra peak memory of one configuration."""
    model = _model(variant)
    x = _inputs(T, B)
    labels = torch.randint(0, N_OUT, (B,))
    y = labels.unsqueeze(0).expand(T, B)
    if variant == "bptt":
        x = x.dense()
    else:
        strat = st.strategies.get("eprop", chunk=chunk,
                                  factorise=True if variant == "eprop-fact" else "auto")
    # warm-up on 2 steps: loads the compiled kernels (numba's code loading costs ~100 MiB of
    # RSS once per process) and runs e-prop's one-time checks (first call of a strategy
    # instance) outside the measured steps; then the kept trace buffers are released, so
    # the measured step allocates them again
    xw, yw = _inputs(2, B, seed=3), y[:2]
    if variant == "bptt":
        w = sum(_step_ce(o, l) for o, l in zip(st.unroll(model, xw.dense()).unbind(0),
                                               yw.unbind(0)))
    else:
        w = st.unroll(model, xw, strat, step_loss=_step_ce, targets=yw)
    w.backward()
    del w
    if variant != "bptt":
        strat.release()
    model.zero_grad(set_to_none=True)
    wall, cpu, extra = [], [], 0
    for r in range(repeats):
        model.zero_grad(set_to_none=True)
        _reset_peak()
        base = _rss()
        t0, c0 = time.perf_counter(), time.process_time()
        if variant == "bptt":
            out = st.unroll(model, x, "bptt")
            loss = sum(_step_ce(o, l) for o, l in zip(out.unbind(0), y.unbind(0)))
        else:
            loss = st.unroll(model, x, strat, step_loss=_step_ce, targets=y)
        loss.backward()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        if r == 0:
            extra = _peak() - base
            report = st.last_report().peak_bytes.get("device", 0)
        del loss
        if variant == "bptt":
            del out
    return {"variant": variant, "T": T, "s": statistics.median(wall),
            "cpu": statistics.median(cpu), "extra": extra, "report": report}


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


def _run(args, variant: str, T: int, repeats: int, fixed_malloc: bool) -> dict | None:
    cmd = [sys.executable, __file__, "--one", variant, str(T), "--B", str(args.B),
           "--repeats", str(repeats), "--chunk", str(args.chunk), "--threads", str(args.threads)]
    env = dict(os.environ)
    if fixed_malloc:
        # glibc's dynamic mmap threshold would keep freed chunk buffers in the heap, so peak
        # RSS would drift with the number of chunks; fixed thresholds return them to the OS
        # and the RSS then tracks live tensors (same setting for every variant). It also
        # makes every large allocation fresh pages, so times come from a separate run with
        # the default allocator, as a user would run.
        env.update(MALLOC_MMAP_THRESHOLD_="262144", MALLOC_TRIM_THRESHOLD_="262144")
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        print(f"  {variant} T={T} failed: {p.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    return json.loads(p.stdout.strip().splitlines()[-1])


def _child(args, variant: str, T: int) -> dict | None:
    """Memory from one step with fixed malloc thresholds; time from ``--repeats`` steps (one
    above T = 1,000) with the default allocator; each in a fresh process."""
    mem = _run(args, variant, T, 1, True)
    tim = _run(args, variant, T, args.repeats if T <= 1000 else 1, False)
    if mem is None or tim is None:
        return None
    return dict(tim, extra=mem["extra"], report=mem["report"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--T", type=int, nargs="+", default=[100, 1000, 10_000, 100_000])
    ap.add_argument("--B", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--chunk", type=int, default=100)
    ap.add_argument("--bptt-max-T", type=int, default=10_000)
    ap.add_argument("--cos-T", type=int, default=200, help="0: skip the cosine table")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: steadiest on a "
                    "shared machine)")
    ap.add_argument("--variants", nargs="+", default=["eprop", "eprop-fact", "bptt"],
                    help="eprop, eprop-fact (factorised trace, detached reset), bptt")
    ap.add_argument("--one", nargs=2, metavar=("VARIANT", "T"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.one:
        print(json.dumps(one(args.one[0], int(args.one[1]), args.B, args.repeats, args.chunk)))
        return 0
    mib = 2 ** 20
    variants = [v for v in ("eprop", "eprop-fact", "bptt") if v in args.variants]
    print(f"SHD shape {N_IN}->{HIDDEN}->{N_OUT} recurrent LIF, B={args.B}, input rate {RATE:.0%}, "
          f"chunk={args.chunk}, torch threads={torch.get_num_threads()}")
    print("per variant: extra peak MiB (strategy's own estimate) | CPU s/step, wall s/step | "
          "CPU ms per simulated step")
    head = " | ".join(f"{v:^37s}" for v in variants)
    print(f"{'T':>7} | {head} | {'cpu ratio':>9} {'wall ratio':>10}")
    rows = {}
    for T in args.T:
        r = {v: (_child(args, v, T) if v != "bptt" or T <= args.bptt_max_T else None)
             for v in variants}
        rows[T] = r

        def cols(x):
            if x is None:
                return f"{'-':>37s}"
            return (f"{x['extra'] / mib:7.1f} ({x['report'] / mib:6.1f}) {x['cpu']:7.3f} "
                    f"{x['s']:7.3f} {1000 * x['cpu'] / x['T']:6.3f}")
        e, b = r.get("eprop"), r.get("bptt")
        ratio = (f"{e['cpu'] / b['cpu']:9.2f} {e['s'] / b['s']:10.2f}" if e and b
                 else f"{'-':>9} {'-':>10}")
        print(f"{T:>7} | " + " | ".join(cols(r[v]) for v in variants) + f" | {ratio}", flush=True)
    for v in ("eprop", "eprop-fact"):
        if 100 in rows and 10_000 in rows and rows[100].get(v) and rows[10_000].get(v):
            m0, m1 = rows[100][v]["extra"], rows[10_000][v]["extra"]
            print(f"{v} extra memory T=10,000 / T=100: {m1 / m0:.3f} (target <= 1.10)")
    if 1000 in rows and rows[1000].get("bptt"):
        b = rows[1000]["bptt"]
        for v in ("eprop", "eprop-fact"):
            if rows[1000].get(v):
                e = rows[1000][v]
                print(f"{v} / bptt time per simulated step at T=1,000: CPU {e['cpu'] / b['cpu']:.2f}, "
                      f"wall {e['s'] / b['s']:.2f} (target <= 1.00)")
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
