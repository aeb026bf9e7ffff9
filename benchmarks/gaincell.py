"""Gain-cell GPT: seconds per training step and peak memory against sequence length.

Rows: ``gaincell_gpt`` (``linear_gaincell`` attention, or ``--kinds``) trained over chunks
with ``bptt``, ``checkpoint`` and ``double``; the same model with ``softmax`` attention over
the same window (torch.nn.functional.scaled_dot_product_attention on each 64-token block's
key band); and, for contrast, full causal softmax attention over the whole sequence at once
(one scaled_dot_product_attention call per layer, ``is_causal=True``, no window).

A training step = forward, cross-entropy on next-byte targets, backward, SGD update. Peak
memory is the strategy report's device peak (bytes autograd keeps for backward, plus the
stored checkpoints); for the full-attention row the same saved-bytes counter. Medians over
``--repeats`` (``--long-repeats`` above 16k tokens). Targets (issue 13): checkpoint at 16k
tokens <= 1/8 of bptt's memory at <= 1.3x its time; cost per token flat in T
(window-bounded) where full attention grows.

    python benchmarks/gaincell.py                      # 1k, 4k, 16k, 64k tokens
    python benchmarks/gaincell.py --max-len 16384 --repeats 3
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import torch.nn.functional as F

import spiketrain as st
from spiketrain.models.gaincell import GainCellGPT
from spiketrain.strategies.bptt import SavedBytes

MiB = 2 ** 20


def full_attention_logits(model: GainCellGPT, x: torch.Tensor) -> torch.Tensor:
    """The model's GPT over the whole sequence with full causal softmax attention."""
    T, B = x.shape
    h = model.wte(x.t())
    for blk in model.h:
        at = blk.attn
        q, k, v = at.cells(blk.ln_1(h), slice(None))
        y = F.scaled_dot_product_attention(q, k - 0.45, v - 0.45, is_causal=True)
        h = h + at.c_proj(at.out(y).transpose(1, 2).reshape(B, T, -1))
        h = h + blk.mlp(blk.ln_2(h))
    return model.lm_head(model.ln_f(h)).transpose(0, 1)


def _load() -> str:
    """The 1/5/15-minute load averages (other jobs on the machine move the timings)."""
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def train_step(model, x, targets, strategy, opts, lr=1e-3):
    """One SGD step; returns (seconds, peak bytes, schedule description)."""
    model.zero_grad(set_to_none=True)
    t0 = time.perf_counter()
    if strategy == "full":
        with SavedBytes(exclude=list(model.parameters())) as saved:
            logits = full_attention_logits(model, x)
        peak, desc = saved.bytes, "whole sequence"
    else:
        logits = st.unroll(model, x, strategy=strategy, **opts)
    loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
    loss.backward()
    with torch.no_grad():
        for p in model.parameters():
            if p.grad is not None:
                p.add_(p.grad, alpha=-lr)
    if x.is_cuda:
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    if strategy != "full":
        rep = st.last_report()
        peak, desc = rep.peak_bytes.get("device", 0), rep.schedule or strategy
    return dt, peak, desc


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", default="1024,4096,16384,65536")
    ap.add_argument("--max-len", type=int, default=None, help="skip longer sequences")
    ap.add_argument("--full-max", type=int, default=16384,
                    help="longest sequence for the full-attention row")
    ap.add_argument("--kinds", default="linear_gaincell")
    ap.add_argument("--strategies", default="bptt,checkpoint,double")
    ap.add_argument("--softmax-strategies", default="bptt,checkpoint",
                    help="strategies for the windowed softmax rows ('' for none)")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--embd", type=int, default=128)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--window", type=int, default=256)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--long-repeats", type=int, default=2,
                    help="repeats for sequences longer than 16384 tokens (each step takes long)")
    ap.add_argument("--json", metavar="PATH", help="also write every sample as JSON")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    lengths = [int(v) for v in args.lengths.split(",") if v]
    if args.max_len:
        lengths = [T for T in lengths if T <= args.max_len]
    rows = [(k, s) for k in args.kinds.split(",") for s in args.strategies.split(",") if s]
    rows += [("softmax", s) for s in args.softmax_strategies.split(",") if s]
    rows += [("softmax", "full")]
    dev = torch.device(args.device)
    print(f"gaincell_gpt: {args.layers} layers, {args.embd} dim, {args.heads} heads, window "
          f"{args.window}, batch {args.batch}, {dev}, {torch.get_num_threads()} threads, "
          f"median of {args.repeats}; load average {_load()}")
    results, samples_out = {}, []
    hdr = (f"{'attention':<16}{'strategy':<11}{'T':>7}{'s/step':>9}{'us/token':>10}"
           f"{'peak MiB':>10}  schedule")
    print(hdr)
    print("-" * len(hdr))
    models = {}
    for kind in dict.fromkeys(k for k, _ in rows):
        torch.manual_seed(0)
        models[kind] = GainCellGPT(n_layer=args.layers, n_head=args.heads, n_embd=args.embd,
                                   window=args.window, attention=kind).to(dev)
    for T in lengths:
        active = [(k, s) for k, s in rows if not (s == "full" and T > args.full_max)]
        g = torch.Generator().manual_seed(T)
        seq = torch.randint(0, 256, (T + 1, args.batch), generator=g).to(dev)
        x, y = seq[:-1], seq[1:]
        samples = {row: [] for row in active}
        for row in active:   # warm-up
            train_step(models[row[0]], x[:min(T, 512)], y[:min(T, 512)], row[1], {})
        repeats = args.repeats if T <= 16384 else args.long_repeats
        for _ in range(repeats):   # interleaved: load changes hit every row alike
            for row in active:
                samples[row].append(train_step(models[row[0]], x, y, row[1], {}))
        for kind, strat in active:
            times = [r[0] for r in samples[kind, strat]]
            sec = statistics.median(times)
            peak = statistics.median(r[1] for r in samples[kind, strat])
            desc = samples[kind, strat][-1][2]
            results[kind, strat, T] = (sec, peak)
            samples_out.append({"attention": kind, "strategy": strat, "T": T, "seconds": times,
                                "peak_bytes": [r[1] for r in samples[kind, strat]],
                                "schedule": desc, "repeats": repeats})
            print(f"{kind:<16}{strat:<11}{T:>7}{sec:>9.3f}{1e6 * sec / T:>10.1f}"
                  f"{peak / MiB:>10.1f}  {desc}  (n={repeats})", flush=True)
    print()
    kind0 = args.kinds.split(",")[0]
    for T in lengths:
        base = results.get((kind0, "bptt", T))
        if not base:
            continue
        for strat in ("checkpoint", "double"):
            r = results.get((kind0, strat, T))
            if r:
                print(f"{kind0} {strat} at T={T}: memory {r[1] / base[1]:.3f} of bptt's, "
                      f"time {r[0] / base[0]:.2f}x")
    for kind, strat in rows:
        per = [results[kind, strat, T][0] / T for T in lengths if (kind, strat, T) in results]
        if len(per) > 1:
            print(f"{kind} {strat}: cost per token, longest / shortest T = {per[-1] / per[0]:.2f}")
    for T in lengths:
        base, soft = results.get((kind0, "bptt", T)), results.get(("softmax", "bptt", T))
        if base and soft:
            print(f"T={T}: {kind0} bptt time {base[0] / soft[0]:.2f}x, memory "
                  f"{base[1] / soft[1]:.2f}x of windowed softmax bptt")
    print(f"load average at the end: {_load()}")
    if args.json:
        import json
        with open(args.json, "w") as f:
            json.dump({"settings": vars(args), "samples": samples_out}, f, indent=1)


if __name__ == "__main__":
    main()
