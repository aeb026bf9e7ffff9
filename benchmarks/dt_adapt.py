"""Zero-shot temporal-resolution adaptation: fidelity and cost (prints Markdown tables).

Synthetic SHD-format data. ``--task order`` (default): classes differ only in the order of
shared frequency bands (``n_bands: 6``), so a network must integrate spike timing.
``--task interval``: classes differ only in the interval in milliseconds between brief
volleys on a random band (``data.intervals``), so a network that keeps its per-step decays at
another step misreads every class. ``--binning count`` bins spike counts (the same input
total at every step); ``--burst-penalty`` trains against firing on consecutive steps (a
count capped by the step, which a finer step uncaps). One RSNN per neuron is trained
at ``--train-dt`` (10 ms) and evaluated, without any training, at 2x finer (5 ms) and 2x
coarser (20 ms) steps: the same spike files binned at the new step, the model mapped by
each method of :mod:`spiketrain.models.resolution` (``none`` = the discrete parameters
unchanged). Then a network trained at 20 ms and mapped to 5 ms is compared with one trained
directly at 5 ms: accuracy at 5 ms and wall time per training step.

    python benchmarks/dt_adapt.py                     # adlif and lif, a few minutes on 2 cores
    python benchmarks/dt_adapt.py --neurons adlif --epochs 4
    python benchmarks/dt_adapt.py --task interval --classes 6 --duration 0.5
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F

import spiketrain as st
from spiketrain.data import DataConfig, build_datasets
from spiketrain.models import RSNN
from spiketrain.models.resolution import METHODS, PROPOSED, adapt
from spiketrain.models.snn import adlif as _adlif  # noqa: F401  (registers "adlif")
from spiketrain.models.snn import learnable as _learnable  # noqa: F401
from spiketrain.trainer.loop import evaluate


def intervals(args) -> list[float]:
    """Class intervals (s) of the interval task: geometric from ``--interval-min`` ms."""
    return [args.interval_min / 1000 * args.interval_ratio ** c for c in range(args.classes)]


def data(args, dt_ms: float):
    """(train, test) datasets of the same spike files binned at ``dt_ms`` (``--binning``)."""
    T = int(round(args.duration * 1000 / dt_ms))
    kw = dict(kind="synthetic", T=T, dt=dt_ms / 1000, duration=args.duration,
              n_train=args.n_train, n_test=args.n_test, n_classes=args.classes, n_in=args.n_in,
              n_bands=6, seed=args.seed, cache_dir=args.cache, event_width=args.event_width,
              jitter=args.jitter, binning=args.binning)
    if args.task == "interval":
        kw.update(intervals=intervals(args), signal_rate=args.signal_rate,
                  band_width=args.band_width)
    return build_datasets(DataConfig(**kw))


def make_model(args, neuron: str, dt_ms: float) -> RSNN:
    torch.manual_seed(args.seed)
    opts = {}
    if args.tau_mem_range and neuron == "adlif":
        opts["tau_mem_range"] = tuple(args.tau_mem_range)
    return RSNN(n_in=args.n_in, hidden=args.hidden, n_out=args.classes, neuron=neuron,
                dt=dt_ms, tau_mem=20.0, tau_out=20.0, tau_adapt=200.0, readout="mean",
                surrogate="superspike", input_gain=(3.0 if neuron != "adlif" else 6.0)
                * args.input_scale, neuron_options=opts or None)


def forward(model, x, bursts: bool = False):
    """``x [T, B, n_in]`` -> (outputs ``[T, B, C]``, mean spikes per step of each hidden
    neuron ``[H]``): the plain step loop (autograd, i.e. BPTT). ``bursts=True`` adds the mean
    per step of each neuron's spikes on two consecutive steps ``[H]`` (a neuron firing at
    every step: a rate the step caps)."""
    state, outs, rate, burst, prev = model.init_state(x.shape[1]), [], 0.0, 0.0, None
    for x_t in x.unbind(0):
        state, o = model.step(state, x_t)
        outs.append(o)
        z = torch.cat([h[-1] for h in state[:-1]], -1)
        rate = rate + z.mean(0)
        if bursts and prev is not None:
            burst = burst + (z * prev).mean(0)
        prev = z
    if bursts:
        return torch.stack(outs), rate / x.shape[0], burst / x.shape[0]
    return torch.stack(outs), rate / x.shape[0]


def train(args, neuron: str, dt_ms: float):
    """Train at ``dt_ms`` (cross-entropy, plus ``--rate-penalty`` times the mean squared
    firing rate per 10 ms, plus ``--burst-penalty`` times the mean fraction of neuron-steps
    that follow a spike with a spike: a neuron firing at every step has a count set by the
    step, which no change of step can follow); returns (model, test accuracy, median seconds
    per training step)."""
    model = make_model(args, neuron, dt_ms)
    train_ds, _ = data(args, dt_ms)
    loader = st.data.SpikeLoader(train_ds, batch_size=args.batch, shuffle=True, seed=args.seed)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    durations = []
    for epoch in range(args.epochs):
        loader.set_epoch(epoch)
        for x, y in loader:
            t0 = time.perf_counter()
            out, rate, burst = forward(model, x, bursts=True)
            per10 = rate * (10.0 / dt_ms)
            loss = (F.cross_entropy(model.logits(out), y) + args.rate_penalty * (per10 ** 2).mean()
                    + args.burst_penalty * burst.mean())
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            durations.append(time.perf_counter() - t0)
    return model, accuracy(args, model, dt_ms), statistics.median(durations)


def accuracy(args, model, dt_ms: float) -> float:
    _, test = data(args, dt_ms)
    loader = st.data.SpikeLoader(test, batch_size=64, shuffle=False)
    with torch.no_grad():
        ev = evaluate(model, loader, task="classification")
    return float(ev.metrics.compute()["acc"])


def behaviour(args, model, dt_ms: float, n: int = 128):
    """(predicted classes ``[n]``, hidden spikes per second) on the first ``n`` test
    samples binned at ``dt_ms``."""
    _, test = data(args, dt_ms)
    x, _ = test.get_batch(list(range(min(n, len(test)))))
    with torch.no_grad():
        out, rate = forward(model, x)
    return model.logits(out).argmax(1), float(rate.mean()) * 1000.0 / dt_ms


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--neurons", nargs="+", default=["adlif", "lif"])
    p.add_argument("--train-dt", type=float, default=10.0, help="ms")
    p.add_argument("--targets", type=float, nargs="+", default=[5.0, 20.0], help="ms")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--n-train", type=int, default=512)
    p.add_argument("--n-test", type=int, default=256)
    p.add_argument("--n-in", type=int, default=140)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--duration", type=float, default=1.0, help="seconds per sample")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--rate-penalty", type=float, default=100.0,
                   help="weight of the mean squared firing rate (spikes per 10 ms)")
    p.add_argument("--burst-penalty", type=float, default=0.0,
                   help="weight of the mean fraction of neuron-steps that follow a spike with a "
                        "spike (firing at every step: a rate capped by the step, which no "
                        "change of step can carry over)")
    p.add_argument("--event-width", type=float, default=0.06, help="s, synthetic events")
    p.add_argument("--jitter", type=float, default=0.04, help="s, synthetic event jitter")
    p.add_argument("--task", choices=("order", "interval"), default="order",
                   help="order: n_bands 6 band order; interval: volley interval in ms")
    p.add_argument("--interval-min", type=float, default=20.0, help="ms, interval task")
    p.add_argument("--interval-ratio", type=float, default=1.45,
                   help="ratio of consecutive class intervals, interval task")
    p.add_argument("--signal-rate", type=float, default=1000.0,
                   help="Hz per channel at a volley's peak, interval task")
    p.add_argument("--band-width", type=int, default=100,
                   help="channels of a volley's band per 700 inputs, interval task")
    p.add_argument("--binning", choices=("binary", "count"), default="binary",
                   help="binary: a unit's spikes in one step count once; count: spikes per step "
                        "(input totals independent of the step)")
    p.add_argument("--seed", type=int, default=0, help="data and initial weights")
    p.add_argument("--tau-mem-range", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                   help="ms, initial adlif membrane time constants (default 5-25)")
    p.add_argument("--input-scale", type=float, default=1.0,
                   help="factor on the input gain (count binning gives larger inputs)")
    p.add_argument("--json", default=None, help="also write the fidelity results here")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-cost", action="store_true", help="skip the train-coarse/deploy-fine table")
    p.add_argument("--cost-only", action="store_true", help="only the train-coarse/deploy-fine table")
    p.add_argument("--cache", default=None, help="synthetic data cache (default: a temp dir)")
    args = p.parse_args(argv)
    tmp = tempfile.TemporaryDirectory()
    args.cache = args.cache or f"{tmp.name}/data"
    torch.set_num_threads(args.threads)

    task = ("n_bands 6 (band order)" if args.task == "order" else
            "interval task, intervals " + ", ".join(f"{1000 * v:.0f}" for v in intervals(args))
            + " ms")
    print(f"## Zero-shot resolution adaptation (trained at {args.train_dt:g} ms, "
          f"{args.epochs} epochs, {args.n_train} train / {args.n_test} test samples, "
          f"{args.classes} classes, {task}, {args.duration:g} s samples, hidden {args.hidden})\n")
    print(f"rate penalty {args.rate_penalty:g}, burst penalty {args.burst_penalty:g}, lr {args.lr:g}, {args.binning} binning, seed "
          f"{args.seed}, recurrent RSNN, readout mean, BPTT\n")
    if not args.cost_only:
        fidelity(args)
    if not args.no_cost:
        cost(args)
    return 0


def fidelity(args) -> None:
    """Train at ``--train-dt``; accuracy at each target step for every method (tables)."""
    head = " | ".join(f"{t:g} ms {m}" for t in args.targets for m in METHODS)
    print(f"| neuron | source acc | {head} |")
    print("|" + "---|" * (2 + len(args.targets) * len(METHODS)))
    results, agree = {}, {}
    for neuron in args.neurons:
        model, src, _ = train(args, neuron, args.train_dt)
        ref_pred, ref_rate = behaviour(args, model, args.train_dt)
        row = {}
        for t in args.targets:
            for m in METHODS:
                try:
                    mapped, _ = adapt(model, args.train_dt, t, m)
                except ValueError as e:  # e.g. euler to a much coarser step
                    print(f"<!-- {neuron} {t:g} ms {m}: refused: {e} -->")
                    row[(t, m)], agree[(neuron, t, m)] = float("nan"), (float("nan"),) * 2
                    continue
                row[(t, m)] = accuracy(args, mapped, t)
                pred, rate = behaviour(args, mapped, t)
                agree[(neuron, t, m)] = (float((pred == ref_pred).float().mean()),
                                         rate / max(ref_rate, 1e-9))
        results[neuron] = (src, row)
        if args.json:
            record = {"neuron": neuron, "source": src, "seed": args.seed, "task": args.task,
                      "binning": args.binning, "acc": {f"{t:g} {m}": v for (t, m), v in row.items()},
                      "agree": {f"{t:g} {m}": agree[(neuron, t, m)][0] for (t, m) in row},
                      "rate": {f"{t:g} {m}": agree[(neuron, t, m)][1] for (t, m) in row},
                      "args": {k: v for k, v in vars(args).items() if k != "cache"}}
            with open(args.json, "a") as f:
                f.write(json.dumps(record) + "\n")
        cells = " | ".join(f"{100 * row[(t, m)]:.1f}" for t in args.targets for m in METHODS)
        print(f"| {neuron} | {100 * src:.1f} | {cells} |", flush=True)
    print("\nSame samples, same spikes in time: agreement of the predicted class with the source "
          "model, and hidden spike rate (per second) relative to the source\n")
    print(f"| neuron | {' | '.join(f'{t:g} ms {m}' for t in args.targets for m in METHODS)} |")
    print("|" + "---|" * (1 + len(args.targets) * len(METHODS)))
    for neuron in args.neurons:
        cells = " | ".join(f"{100 * agree[(neuron, t, m)][0]:.0f}% / x{agree[(neuron, t, m)][1]:.2f}"
                           for t in args.targets for m in METHODS)
        print(f"| {neuron} | {cells} |")
    print()
    for neuron, (src, row) in results.items():
        for t in args.targets:
            best = max(PROPOSED, key=lambda m: -1.0 if row[(t, m)] != row[(t, m)] else row[(t, m)])
            print(f"- {neuron} at {t:g} ms: best mapping {best} keeps "
                  f"{100 * row[(t, best)] / max(src, 1e-9):.0f}% of the source accuracy "
                  f"(baseline {100 * row[(t, 'baseline')] / max(src, 1e-9):.0f}%, "
                  f"no adaptation {100 * row[(t, 'none')] / max(src, 1e-9):.0f}%)")


def cost(args) -> None:
    """Train at 20 ms and map to 5 ms vs train at 5 ms: accuracy and step time (table)."""
    print("\n## Train coarse, deploy fine: trained at 20 ms and mapped to 5 ms vs trained at 5 ms\n")
    print("| neuron | route | steps per sample | ms per training step (median) | test acc at 5 ms |")
    print("|---|---|---|---|---|")
    ratios = []
    for neuron in args.neurons:
        coarse, acc20, s20 = train(args, neuron, 20.0)
        print(f"| {neuron} | train 20 ms (tested at 20 ms) | {round(args.duration * 50)} | "
              f"{1000 * s20:.1f} | {100 * acc20:.1f} (at 20 ms) |", flush=True)
        for m in PROPOSED + ("baseline", "none"):
            try:
                mapped, _ = adapt(copy.deepcopy(coarse), 20.0, 5.0, m)
                cell = f"{100 * accuracy(args, mapped, 5.0):.1f}"
            except ValueError as e:  # e.g. a transition matrix without a real power
                cell = f"refused: {' '.join(str(e).split())}"
            print(f"| {neuron} | train 20 ms, {m} -> 5 ms | {round(args.duration * 50)} | "
                  f"{1000 * s20:.1f} | {cell} |", flush=True)
        _, acc5, s5 = train(args, neuron, 5.0)
        print(f"| {neuron} | train 5 ms | {round(args.duration * 200)} | {1000 * s5:.1f} | "
              f"{100 * acc5:.1f} |", flush=True)
        ratios.append(f"- {neuron}: a training step at 20 ms costs {s20 / s5:.2f}x one at 5 ms "
                      f"({s5 / s20:.1f}x cheaper; medians over all steps of each run)")
    print("\n" + "\n".join(ratios))


if __name__ == "__main__":
    raise SystemExit(main())
