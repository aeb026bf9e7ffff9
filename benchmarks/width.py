"""Training-step time at width: spiketrain (exact, sparse backward) beside plain PyTorch and
snnTorch, in one process.

Model: 700 inputs -> H recurrent LIF (subtract reset, tau_mem 20 steps, fast-sigmoid
surrogate) -> 20 leaky readout units, logits = max over time, cross entropy, Adam; binary
input spikes at rate 2%; H in {256, 512, 1024, 2048} x batch {32, 64}, T = 1000.
The plain PyTorch and snnTorch models are those of ``benchmarks/peers.py`` at width H.

Implementations:

- ``st-exact``: ``RSNN`` default (membrane replayed in backward, exact gradient);
- ``st-keep``: ``RSNN(keep_membrane=True)`` (surrogate derivative kept: no replay; exact);
- ``st-sparse``: ``RSNN(keep_membrane=True, sparse_backward=--cut)`` (surrogate zeroed
  where ``|v - thr| / thr > cut``; recurrent product over the active neurons only); with
  several cuts one row per cut, ``st-sparse0.5``, ``st-sparse1.0``, ...;
- ``plain``, ``snntorch``.

Per row: seconds per step, wall and CPU time of the process (median of ``--repeats`` after
a warm-up, implementations interleaved; on a loaded machine CPU time is the steadier
figure), each time / snnTorch's and / plain's, and for spiketrain the split into
forward, backward, compiled kernels (membrane, scatters, sparse recursion) and matrix
products (``aten::mm``/``addmm``/``bmm``, from one profiled step); the cosine between the
sparse and the exact gradient (all parameters, and ``W_rec`` alone) and the share of
neuron-steps inside the cut.

    python benchmarks/width.py [--hidden 1024] [--batch 64] [--T 1000] [--repeats 3]
                               [--threads 2] [--cut 0.5 1.0] [--impls st-exact st-sparse snntorch]
"""
from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peers  # noqa: E402  (the plain and snnTorch models, sized by its module constants)

import spiketrain as st  # noqa: E402
from spiketrain.hardware import sparse as sparse_ops  # noqa: E402
from spiketrain.models import RSNN  # noqa: E402
from spiketrain.models.snn import lif_numba, lif_sparse_numba  # noqa: E402

IMPLS = ["st-exact", "st-keep", "st-sparse", "plain", "snntorch"]
KERNELS = [(lif_numba, "membrane_block"), (lif_numba, "recurrent_grad"),
           (lif_sparse_numba, "lif_backward_sparse"), (sparse_ops, "scatter_grad")]


class Timers:
    """Wall time spent inside the compiled-kernel wrappers (patched while active)."""

    def __init__(self):
        self.total = 0.0
        self._orig = []

    def __enter__(self):
        for mod, name in KERNELS:
            fn = getattr(mod, name)
            self._orig.append((mod, name, fn))

            def wrapped(*a, _fn=fn, **k):
                t = time.perf_counter()
                try:
                    return _fn(*a, **k)
                finally:
                    self.total += time.perf_counter() - t
            setattr(mod, name, wrapped)
        return self

    def __exit__(self, *exc):
        for mod, name, fn in self._orig:
            setattr(mod, name, fn)


# spiketrain's W_rec is scaled by this at init (set by --wrec-scale): at the default init the
# backward through T = 1000 steps of a 1024-wide layer overflows (|grad| ~ 1e27 at T = 250,
# NaN at T = 1000), and a NaN gradient makes every neuron "active" for the sparse backward
WREC_SCALE = 0.2


def cut_of(name: str, default: float) -> float | None:
    """The sparse-backward cut of implementation ``name`` (``st-sparse0.5``: 0.5; plain
    ``st-sparse``: ``default``; None for the exact ones)."""
    if not name.startswith("st-sparse"):
        return None
    rest = name[len("st-sparse"):]
    return float(rest) if rest else default


def build(name: str, H: int, cut: float, seed: int = 0):
    """``(model, loss(x, y))`` for implementation ``name`` at width ``H``."""
    torch.manual_seed(seed)
    if name.startswith("st-"):
        m = RSNN(peers.N_IN, H, peers.N_OUT, tau_mem=peers.TAU, tau_out=peers.TAU, readout="max",
                 keep_membrane=name != "st-exact",
                 sparse_backward=cut_of(name, cut))
        with torch.no_grad():
            for layer in m.layers:
                layer.w_rec.mul_(WREC_SCALE)
        return m, lambda x, y: F.cross_entropy(m.logits(st.unroll(m, x, "bptt")), y)
    peers.HIDDEN = H
    return peers.build(name)


def make_step(name, H, cut, x, y):
    model, loss_fn = build(name, H, cut)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step(split=None):
        t = time.perf_counter()
        loss = loss_fn(x, y)
        t1 = time.perf_counter()
        opt.zero_grad()
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        if split is not None:
            split["forward"], split["backward"] = t1 - t, t2 - t1
        return loss
    return model, loss_fn, step


def matmul_seconds(step) -> float:
    """Self CPU seconds of the matrix products in one profiled step."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    names = {"aten::mm", "aten::addmm", "aten::bmm", "aten::embedding_bag",
             "aten::_embedding_bag"}
    return sum(e.self_cpu_time_total for e in prof.key_averages() if e.key in names) / 1e6


def grad_cosine(H: int, cut: float, x, y):
    """Cosine of the sparse-backward gradient with the exact one (same weights, same batch),
    all parameters and ``W_rec`` alone, and the share of neuron-steps within the cut."""
    grads = []
    for c in (None, cut):
        m, loss_fn = build("st-exact", H, cut)
        m.sparse_backward = c
        loss_fn(x, y).backward()
        # float64: at width the norms of these gradients can overflow float32
        grads.append({n: p.grad.reshape(-1).double() for n, p in m.named_parameters()})
    a, b = torch.cat(list(grads[0].values())), torch.cat(list(grads[1].values()))
    cos = float(F.cosine_similarity(a, b, dim=0))
    key = "layers.0.w_rec"
    wrec = float(F.cosine_similarity(grads[0][key], grads[1][key], dim=0))
    # share of neuron-steps whose normalised distance to threshold is within the cut
    m, _ = build("st-exact", H, cut)
    with torch.no_grad():
        state = m.init_state(x.shape[1])
        layer = m.layers[0]
        i_in = layer.input_current(x)
        (v, z), inside, n = state[0], 0, 0
        for i_t in i_in.unbind(0):
            v, z = layer.step_current((v, z), i_t)
            inside += int(((v - layer.threshold).abs() / layer.threshold <= cut).sum())
            n += v.numel()
    return cos, wrec, inside / n


def main(argv=None) -> int:
    global WREC_SCALE
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hidden", type=int, nargs="+", default=[256, 512, 1024, 2048])
    ap.add_argument("--batch", type=int, nargs="+", default=[32, 64])
    ap.add_argument("--T", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cut", type=float, nargs="+", default=[0.5],
                    help="sparse backward: |v - thr| / thr beyond which the surrogate is 0")
    ap.add_argument("--impls", nargs="+", default=IMPLS)
    ap.add_argument("--wrec-scale", type=float, default=WREC_SCALE,
                    help="scale of spiketrain's W_rec at init (1: the default init, whose "
                         "gradient overflows at width and T = 1000)")
    ap.add_argument("--no-profile", action="store_true", help="skip the matmul profile")
    a = ap.parse_args(argv)
    WREC_SCALE = a.wrec_scale
    torch.set_num_threads(a.threads)
    names = []
    for p in a.impls:  # one sparse row per cut
        names += [f"st-sparse{c}" for c in a.cut] if p == "st-sparse" and len(a.cut) > 1 else [p]
    impls = []
    for p in names:
        try:
            build(p, 8, a.cut[0])
            impls.append(p)
        except ImportError as e:
            print(f"skipping {p}: {e}")
    print(f"torch {torch.__version__}, {a.threads} thread(s), T={a.T}, {peers.N_IN}->H->"
          f"{peers.N_OUT}, input rate {peers.RATE:.0%}, median of {a.repeats}, cut {a.cut}, "
          f"spiketrain W_rec x{WREC_SCALE} at init")
    rows = []
    for H in a.hidden:
        for B in a.batch:
            peers.BATCH = B
            x, y = peers.data(a.T)
            steps = {p: make_step(p, H, a.cut[0], x, y)[2] for p in impls}
            times = {p: [] for p in impls}
            cpu = {p: [] for p in impls}
            split = {p: {} for p in impls}
            kern = {p: [] for p in impls}
            for p in impls:
                steps[p]()  # warm-up (and numba compile)
            for _ in range(a.repeats):
                for p in impls:
                    with Timers() as tm:
                        t, c = time.perf_counter(), time.process_time()
                        steps[p](split[p])
                        times[p].append(time.perf_counter() - t)
                        cpu[p].append(time.process_time() - c)
                    kern[p].append(tm.total)
            med = {p: statistics.median(v) for p, v in times.items()}
            cmed = {p: statistics.median(v) for p, v in cpu.items()}
            mm = {p: (None if a.no_profile or not p.startswith("st-") else matmul_seconds(steps[p]))
                  for p in impls}
            del steps
            cos = {p: grad_cosine(H, cut_of(p, a.cut[0]), x, y) for p in impls
                   if p.startswith("st-sparse")}
            for p in impls:
                r_snn = med[p] / med["snntorch"] if "snntorch" in med else float("nan")
                r_pl = med[p] / med["plain"] if "plain" in med else float("nan")
                c_snn = cmed[p] / cmed["snntorch"] if "snntorch" in cmed else float("nan")
                c_pl = cmed[p] / cmed["plain"] if "plain" in cmed else float("nan")
                row = dict(H=H, B=B, impl=p, s=med[p], snn=r_snn, plain=r_pl, cpu=cmed[p],
                           csnn=c_snn, cplain=c_pl,
                           fwd=split[p].get("forward"), bwd=split[p].get("backward"),
                           kern=statistics.median(kern[p]) if p.startswith("st-") else None,
                           mm=mm[p], cos=cos.get(p))
                rows.append(row)
                print(f"  H={H:5d} B={B:3d} {p:10s} {med[p]:7.3f} s/step  /snntorch {r_snn:5.2f}x"
                      f"  /plain {r_pl:5.2f}x  cpu {cmed[p]:7.3f} s ({c_snn:5.2f}x, {c_pl:5.2f}x)  fwd {row['fwd']:.3f} bwd {row['bwd']:.3f}"
                      + (f"  kernels {row['kern']:.3f}" if row["kern"] is not None else "")
                      + (f"  matmul {row['mm']:.3f}" if row["mm"] is not None else "")
                      + (f"  cos {row['cos'][0]:.4f} (W_rec {row['cos'][1]:.4f}), inside cut "
                         f"{row['cos'][2]:.1%}" if row["cos"] else ""), flush=True)
    print()
    print("| H | B | implementation | s/step | / snnTorch | / plain | CPU s/step | CPU / snnTorch | "
          "CPU / plain | forward s | backward s | kernels s | matmul s | "
          "grad cosine vs exact (all / W_rec) | neuron-steps in cut |")
    print("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    f = (lambda v: "-" if v is None else f"{v:.3f}")
    for r in rows:
        c = r["cos"]
        print(f"| {r['H']} | {r['B']} | {r['impl']} | {r['s']:.3f} | {r['snn']:.2f}x | "
              f"{r['plain']:.2f}x | {r['cpu']:.3f} | {r['csnn']:.2f}x | {r['cplain']:.2f}x | "
              f"{f(r['fwd'])} | {f(r['bwd'])} | {f(r['kern'])} | {f(r['mm'])} | "
              + (f"{c[0]:.4f} / {c[1]:.4f} | {c[2]:.1%} |" if c else "- | - |"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
