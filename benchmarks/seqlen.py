"""Sequence-length sweep: time and memory per memory strategy, SHD shape (700 -> 256 -> 20,
batch 32, input spike rate 2 %), beside torch.utils.checkpoint (reentrant, non-reentrant).

Every (strategy, T) runs in a fresh subprocess so its peak RSS is its own. Inputs are a
seeded Poisson spike train generated per 100-step block as sparse indices: up to
T = 30,000 it is built whole as one SparseSpikes before the clock starts (the same input
for every strategy, bptt included; torch.utils.checkpoint gets its dense form); beyond, it
is generated block by block on demand (a T = 1,000,000 train at 2 % is 450 M spikes, too
big to hold in any form within 2 GiB) and the CPU time spent generating is reported as
``gen``. Scheduled strategies then return outputs reduced over time (``reduce="max"``, the
model's readout): ``[T, B, 20]`` float outputs alone are 2.4 GiB at T = 1,000,000.

    python benchmarks/seqlen.py                          # sweep T in {1k, 3k, 10k} (quick)
    python benchmarks/seqlen.py --T 1000 3000 10000 30000 100000 --repeats 3
    python benchmarks/seqlen.py --one double 1000000 --reduce max     # one run, JSON line
    python benchmarks/seqlen.py --longest 1GiB           # longest T per strategy in 1 GiB
    python benchmarks/seqlen.py --side 10000 --strategies bptt checkpoint double --repeats 5
    python benchmarks/seqlen.py --auto --T 1000 3000 --budgets 1MiB 4MiB 64MiB

Numbers are medians of ``--repeats`` training steps (forward + backward + SGD step); the
machine may be shared, so compare ratios measured in the same run.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import spiketrain as st  # noqa: E402
from spiketrain.hardware.units import format_size, parse_size  # noqa: E402
from spiketrain.models import RSNN  # noqa: E402

from seqlen_setup import (BATCH, HIDDEN, MATERIALIZE_MAX_T, N_IN, N_OUT,  # noqa: E402,F401
                          PoissonSource, make_model, tuc_unroll)


def one(name: str, T: int, repeats: int, reduce: str | None, opts: dict) -> dict:
    """One (strategy, T) measurement in this process."""
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    model = make_model()
    src = PoissonSource(T, progress=int(os.environ.get("BENCH_PROGRESS", "0")))
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    target = torch.arange(BATCH) % N_OUT
    if name.startswith("tuc_"):
        x = src.dense()  # torch.utils.checkpoint needs a dense tensor
    elif T <= MATERIALIZE_MAX_T:
        x = src.materialize()  # one SparseSpikes, built before the clock starts
    else:
        x = src  # generated per block on demand (its CPU time is reported as gen_s)
    # warm-up on 128 steps: compiles the kernels (numba) outside the timed steps
    xw = PoissonSource(128, seed=1)
    xw = xw.dense() if name.startswith("tuc_") else xw.materialize()
    yw = tuc_unroll(model, xw, name == "tuc_reentrant") if name.startswith("tuc_") else \
        st.unroll(model, xw, strategy=name, **opts)
    model.logits(yw).sum().backward()
    model.zero_grad(set_to_none=True)
    del xw, yw
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    times, cpu, gen, rep = [], [], [], None
    for _ in range(repeats):
        g0 = src.gen_s
        t, c = time.perf_counter(), time.process_time()
        if name.startswith("tuc_"):
            y = tuc_unroll(model, x, reentrant=name == "tuc_reentrant")
            logits = model.logits(y)
        else:
            y = st.unroll(model, x, strategy=name, **({"reduce": reduce} if reduce else {}), **opts)
            logits = y if reduce else model.logits(y)
        loss = torch.nn.functional.cross_entropy(logits, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
        gen.append(src.gen_s - g0)
        del y, logits, loss
        rep = None if name.startswith("tuc_") else st.last_report()
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    s = statistics.median(times)
    c = statistics.median(cpu)
    return {"strategy": name, "T": T, "s_per_step": s, "us_per_sim_step": 1e6 * s / T,
            "cpu_s_per_step": c, "cpu_us_per_sim_step": 1e6 * c / T,
            "gen_s_per_step": statistics.median(gen),
            "peak_bytes": rep.peak_bytes if rep else {}, "recomputed": rep.recomputed_steps if rep else None,
            "moved": rep.bytes_moved if rep else None, "schedule": rep.schedule if rep else "",
            "rss_peak": rss1, "rss_extra": max(0, rss1 - rss0), "repeats": repeats}


def run_child(name, T, repeats, reduce=None, opts=None, timeout=3600):
    cmd = [sys.executable, __file__, "--one", name, str(T), "--repeats", str(repeats),
           "--opts", json.dumps(opts or {})] + (["--reduce", reduce] if reduce else [])
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"strategy": name, "T": T, "error": f"timeout {timeout}s"}
    for line in out.stdout.splitlines()[::-1]:
        if line.startswith("{"):
            return json.loads(line)
    return {"strategy": name, "T": T, "error": (out.stderr.strip().splitlines() or ["?"])[-1][:120]}


def fmt_peaks(p):
    return " ".join(f"{k}={format_size(v)}" for k, v in p.items()) or "-"


SWEEP = ["bptt", "tuc_reentrant", "tuc_nonreentrant", "checkpoint", "revolve", "double",
         "offload_host", "offload_disk"]
DENSE_MAX_T = 30_000  # bptt and torch.utils.checkpoint are run up to here (tuc: dense input, 0.9 GB per 10k steps)


def float_bptt_bytes_per_step() -> float:
    """Bytes plain autograd BPTT (the same RSNN stepped with float spikes, ``fused=False``)
    saves per step: the reference the device peaks are also compared with."""
    from spiketrain.strategies.bptt import SavedBytes
    torch.manual_seed(0)
    model = RSNN(N_IN, HIDDEN, N_OUT, layers=1, neuron="lif", fused=False)
    b = []
    for T in (20, 40):
        x = PoissonSource(T).dense()
        with SavedBytes(exclude=list(model.parameters()) + [x]) as sb:
            model.chunk(model.init_state(BATCH), x)
        b.append(sb.bytes)
    return (b[1] - b[0]) / 20


def sweep(Ts, repeats, names, timeout):
    rows = []
    fstep = float_bptt_bytes_per_step()
    print(f"plain float BPTT saves {format_size(int(fstep))} per step ({format_size(int(fstep * 10_000))} "
          f"at T=10,000); 'dev/bptt' and 'dev/float' = device-tier peak / that of bptt (measured "
          f"here, affine in T beyond) / of float BPTT; 'x bptt' at T > {DENSE_MAX_T:,} is against "
          f"the largest T bptt ran at (*); 'gen' = CPU s generating the input inside the step")
    print(f"{'strategy':18s} {'T':>8s} {'s/step':>8s} {'us/sim-step':>11s} {'x bptt':>7s} "
          f"{'cpu s':>7s} {'cpu x':>6s} {'gen':>5s} "
          f"{'peak per tier':34s} {'dev/bptt':>8s} {'dev/float':>9s} {'RSS peak':>9s} "
          f"{'RSS extra':>9s} {'recomp':>8s}")
    base = cbase = bpeak = None
    for T in Ts:
        star = " "
        for name in names:
            if name in ("bptt", "tuc_reentrant", "tuc_nonreentrant") and T > DENSE_MAX_T:
                star = "*"
                continue
            strat, opts = name, {}
            if name.startswith("offload_"):
                strat, opts = "offload", {"tier": name.split("_")[1]}
            if name == "revolve":
                opts = {"block": max(1, T // 200)}
            reduce = "max" if T > MATERIALIZE_MAX_T and strat in ("checkpoint", "revolve", "double") else None
            r = run_child(strat, T, repeats if T <= 10_000 else 1, reduce=reduce, opts=opts,
                          timeout=timeout)
            r["strategy"] = name
            rows.append(r)
            if "error" in r:
                print(f"{name:18s} {T:8d}  error: {r['error']}", flush=True)
                continue
            if name == "bptt":
                base, cbase = r["us_per_sim_step"], r["cpu_us_per_sim_step"]
                bpeak = (r["peak_bytes"]["device"] / T)
            ratio = f"{r['us_per_sim_step'] / base:6.2f}{star}" if base else "      -"
            cratio = f"{r['cpu_us_per_sim_step'] / cbase:5.2f}{star}" if base else "     -"
            dev = r["peak_bytes"].get("device")
            dr = f"1/{bpeak * T / dev:.0f}" if bpeak and dev else "-"
            fr = f"1/{fstep * T / dev:.0f}" if dev else "-"
            print(f"{name:18s} {T:8d} {r['s_per_step']:8.2f} {r['us_per_sim_step']:11.1f} {ratio} "
                  f"{r['cpu_s_per_step']:7.2f} {cratio} {r.get('gen_s_per_step', 0):5.1f} "
                  f"{fmt_peaks(r['peak_bytes']):34s} {dr:>8s} {fr:>9s} {format_size(r['rss_peak']):>9s} "
                  f"{format_size(r['rss_extra']):>9s} {r['recomputed'] if r['recomputed'] is not None else '-':>8}",
                  flush=True)
    return rows


def side_by_side(T: int, names, repeats: int):
    """Time ratios measured side by side: one process, the same input, repeats interleaved
    (bptt, a, b, ..., bptt, a, b, ...), median wall and CPU seconds per training step."""
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    model = make_model()
    x = PoissonSource(T).materialize()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    target = torch.arange(BATCH) % N_OUT
    runs = []
    for name in names:
        strat, opts = name, {}
        if name.startswith("offload_"):
            strat, opts = "offload", {"tier": name.split("_")[1]}
        if name == "revolve":
            opts = {"block": max(1, T // 200)}
        runs.append((name, strat, opts))
    wall = {n: [] for n, _, _ in runs}
    cpu = {n: [] for n, _, _ in runs}
    peaks = {}
    for r in range(repeats + 1):  # the first round warms up (kernel compilation)
        for name, strat, opts in runs:
            t, c = time.perf_counter(), time.process_time()
            y = st.unroll(model, x, strategy=strat, **opts)
            loss = torch.nn.functional.cross_entropy(model.logits(y), target)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if r:
                wall[name].append(time.perf_counter() - t)
                cpu[name].append(time.process_time() - c)
            peaks[name] = st.last_report().peak_bytes
            del y, loss
    print(f"side by side at T={T:,}, {repeats} interleaved repeats (medians; per-repeat CPU s in [])")
    print(f"{'strategy':14s} {'s/step':>7s} {'x bptt':>7s} {'cpu s':>7s} {'cpu x':>6s}  "
          f"{'peak per tier':34s} cpu s per repeat")
    b_w, b_c = statistics.median(wall[names[0]]), statistics.median(cpu[names[0]])
    for name, _, _ in runs:
        w, c = statistics.median(wall[name]), statistics.median(cpu[name])
        print(f"{name:14s} {w:7.2f} {w / b_w:7.2f} {c:7.2f} {c / b_c:6.2f}  {fmt_peaks(peaks[name]):34s} "
              f"[{' '.join(f'{v:.2f}' for v in cpu[name])}]", flush=True)


def longest(budget: str):
    """Longest T each strategy's plan fits in a device budget (exact byte model, no training)."""
    from spiketrain.models.base import state_nbytes
    from spiketrain.strategies.scheduled import saved_model
    cap = parse_size(budget)
    model = make_model()
    src = PoissonSource(10_000)
    state = model.init_state(BATCH)
    S = state_nbytes(state)
    saved = saved_model(model, src, state)
    saved.measure([100, 1000])
    print(f"state {format_size(S)}, saved bytes: 1 step {format_size(saved(1))}, 100 steps "
          f"{format_size(saved(100))}, 1000 steps {format_size(saved(1000))}")
    print(f"{'strategy':12s} {'longest T within ' + budget:>26s}  plan at that T")

    def fits(name, T, **o):
        s = st.strategies.get(name, budget={"device": cap}, **o)
        if name == "bptt":
            return saved(T) <= cap, f"saved {format_size(saved(T))}"
        plan = s.plan(T, S, saved, torch.device("cpu"))
        return plan.need["device"] <= cap, plan.desc

    for name in ("bptt", "checkpoint"):
        lo, hi, desc = 1, 2, ""
        while fits(name, hi)[0]:
            lo, desc, hi = hi, fits(name, hi)[1], hi * 2
        while hi - lo > max(1, lo // 1000):
            mid = (lo + hi) // 2
            ok, d = fits(name, mid)
            lo, hi, desc = (mid, hi, d) if ok else (lo, mid, desc)
        print(f"{name:12s} {lo:26,d}  {desc}")
    for name in ("revolve", "double"):
        for T in (10**6, 10**8):
            o = {"block": math.ceil(math.sqrt(T))} if name == "revolve" else {}
            ok, d = fits(name, T, **o)
            print(f"{name:12s} {'T=' + format(T, ',') + (' fits' if ok else ' does not fit'):>26s}  {d}")
    print(f"{'offload':12s} {'unbounded by device':>26s}  everything saved goes to host/disk "
          f"(bounded by their size)")


def auto_grid(Ts, budgets, repeats):
    """For each (T, device budget): auto's ranking (estimated), then every feasible candidate
    measured; is auto's choice the measured fastest (or within 1.2x of it)? Per T all
    distinct candidate plans run in this process on the same input, repeats interleaved
    after a warm-up round, so their ranking is not skewed by other jobs coming and going."""
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    print(f"measured = median CPU seconds per training step over {repeats} interleaved repeats "
          f"(the machine is shared; CPU time is less sensitive to other jobs than wall time)")
    print(f"{'T':>6s} {'budget':>8s} {'auto choice':34s} {'measured fastest':34s} {'choice s':>9s} "
          f"{'best s':>8s} {'ratio':>6s}  all measured (CPU s/step)")
    cases, hits, worst = 0, 0, 1.0
    target = torch.arange(BATCH) % N_OUT
    for T in Ts:
        model = make_model()
        x = PoissonSource(T).materialize()
        cells, configs = [], {}
        for b in budgets:
            a = st.strategies.get("auto", budget={"device": b})
            feas = [r for r in a.rank(model, x) if r.fits]
            cells.append((b, feas))
            for r in feas:
                configs.setdefault(json.dumps([r.name, r.options], sort_keys=True), (r.name, r.options))
        cpu = {k: [] for k in configs}
        for rnd in range(repeats + 1):  # round 0 warms up
            for k, (name, opts) in configs.items():
                c = time.process_time()
                y = st.unroll(model, x, strategy=name, **opts)
                torch.nn.functional.cross_entropy(model.logits(y), target).backward()
                model.zero_grad(set_to_none=True)
                if rnd:
                    cpu[k].append(time.process_time() - c)
                del y
        med = {k: statistics.median(v) for k, v in cpu.items()}
        for b, feas in cells:
            if not feas:
                print(f"{T:6d} {b:>8s} nothing fits")
                continue
            meas = []
            for r in feas:
                k = json.dumps([r.name, r.options], sort_keys=True)
                label = r.name + ("(" + ",".join(f"{kk}={v}" for kk, v in r.options.items()) + ")"
                                  if r.options else "")
                meas.append((med[k], label, r))
            choice = meas[0]
            best = min(meas, key=lambda m: m[0])
            ratio = choice[0] / best[0]
            cases += 1
            hits += choice is best
            worst = max(worst, ratio)
            allm = " ".join(f"{lab.split('(')[0]}={t:.2f}" for t, lab, _ in meas)
            print(f"{T:6d} {b:>8s} {choice[1][:34]:34s} {best[1][:34]:34s} {choice[0]:9.2f} "
                  f"{best[0]:8.2f} {ratio:6.2f}  {allm}", flush=True)
    if cases:
        print(f"auto chose the measured fastest in {hits}/{cases} cases ({100 * hits / cases:.0f} %); "
              f"worst ratio to the fastest {worst:.2f}x")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--T", type=int, nargs="+", default=[1000, 3000, 10000])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--strategies", nargs="+", default=SWEEP)
    ap.add_argument("--one", nargs=2, metavar=("STRATEGY", "T"))
    ap.add_argument("--opts", default="{}")
    ap.add_argument("--reduce", default=None)
    ap.add_argument("--longest", metavar="BUDGET")
    ap.add_argument("--auto", action="store_true")
    ap.add_argument("--side", type=int, metavar="T",
                    help="time ratios side by side in one process at this T (first strategy = base)")
    ap.add_argument("--budgets", nargs="+", default=["1MiB", "4MiB", "64MiB"])
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per (strategy, T) run")
    a = ap.parse_args(argv)
    if a.one:
        print(json.dumps(one(a.one[0], int(a.one[1]), a.repeats, a.reduce, json.loads(a.opts))))
        return 0
    if a.longest:
        longest(a.longest)
        return 0
    if a.auto:
        auto_grid(a.T, a.budgets, a.repeats)
        return 0
    if a.side:
        side_by_side(a.side, a.strategies, a.repeats)
        return 0
    sweep(a.T, a.repeats, a.strategies, a.timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
