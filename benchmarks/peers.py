"""One SHD-shape training step: spiketrain beside a plain PyTorch loop, snnTorch, Norse and
SpikingJelly, in one process.

Model: 700 inputs -> 256 recurrent LIF (subtract reset, tau_mem 20 steps, fast-sigmoid
surrogate) -> 20 leaky readout units (tau 20 steps), logits = max over time, cross entropy,
Adam. Batch 32, binary input spikes at rate 2%, T in {100, 300, 1000, 3000}.

- ``spiketrain``: ``st.unroll(model, x, "bptt")`` on ``RSNN`` (fused chunk, bool spike
  storage, sparse input kernel chosen by the measured rate); ``spiketrain-bits``: bit-packed.
- ``plain``: the same maths written the usual way: input projection over the whole
  sequence (one matmul), a Python loop over ``x.unbind(0)``, a surrogate-spike autograd
  Function, autograd for backward.
- ``snntorch``: ``snn.RLeaky`` (all-to-all recurrent, subtract reset, fast_sigmoid) fed by
  ``nn.Linear`` per step.
- ``norse``: ``norse.torch.LIFRecurrent`` (Norse's LIF has a synaptic-current state, so it
  does a little more per step).
- ``spikingjelly``: ``layer.LinearRecurrentContainer(neuron.LIFNode(v_reset=None))`` (soft
  reset; its recurrence is one Linear over [input, output]), torch backend, single-step loop
  after a multi-step input Linear.
Peers share the readout (one Linear over all steps, then the leaky integration loop).

Reported per T: seconds per step, wall and CPU time of this process (median of
``--repeats``, implementations interleaved so machine load hits all alike, one warm-up step
each; on a shared machine the CPU time is the steadier figure and the ratios use it), bytes autograd saves for backward
(``SavedBytes`` hook: activations only, not parameters or inputs), peak RSS growth of a fresh
process during one step (``--no-rss`` skips), and each peer's time / spiketrain's time.

    python benchmarks/peers.py [--T 100 300 1000 3000] [--repeats 3] [--threads 1]
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

N_IN, HIDDEN, N_OUT, BATCH, RATE = 700, 256, 20, 32, 0.02
TAU = 20.0
BETA = math.exp(-1.0 / TAU)
PEERS = ["spiketrain", "spiketrain-bits", "plain", "snntorch", "norse", "spikingjelly"]


def data(T: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(T, BATCH, N_IN, generator=g) < RATE).float()
    y = torch.randint(0, N_OUT, (BATCH,), generator=g)
    return x, y


class Readout(nn.Module):
    """Leaky readout shared by the peers: ``o_t = kappa o_{t-1} + W z_t + b``; max over t."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(HIDDEN, N_OUT)

    def forward(self, spikes):
        u = self.fc(spikes)
        o = torch.zeros_like(u[0])
        outs = []
        for u_t in u.unbind(0):
            o = BETA * o + u_t
            outs.append(o)
        return torch.stack(outs).max(0).values


class _FastSigmoid(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * 25.0 / (2.0 * (1.0 + 25.0 * x.abs()) ** 2)


class Plain(nn.Module):
    def __init__(self):
        super().__init__()
        self.w_in = nn.Linear(N_IN, HIDDEN, bias=False)
        self.w_rec = nn.Linear(HIDDEN, HIDDEN, bias=False)
        self.readout = Readout()

    def forward(self, x):
        i_in = self.w_in(x)
        v = z = torch.zeros(x.shape[1], HIDDEN)
        spikes = []
        for i_t in i_in.unbind(0):
            v = BETA * v + i_t + self.w_rec(z) - z
            z = _FastSigmoid.apply(v - 1.0)
            spikes.append(z)
        return self.readout(torch.stack(spikes))


def build(name: str):
    """``(module, loss(x, y) -> scalar)`` for peer ``name``."""
    if name.startswith("spiketrain"):
        import spiketrain as st
        from spiketrain.models import RSNN
        m = RSNN(N_IN, HIDDEN, N_OUT, tau_mem=TAU, tau_out=TAU, readout="max",
                 spike_storage="bits" if name.endswith("bits") else "bool")
        return m, lambda x, y: F.cross_entropy(m.logits(st.unroll(m, x, "bptt")), y)
    if name == "plain":
        m = Plain()
        return m, lambda x, y: F.cross_entropy(m(x), y)
    if name == "snntorch":
        import snntorch as snn
        from snntorch import surrogate

        class SnnTorch(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(N_IN, HIDDEN, bias=False)
                self.lif = snn.RLeaky(beta=BETA, linear_features=HIDDEN, reset_mechanism="subtract",
                                      spike_grad=surrogate.fast_sigmoid(slope=25))
                self.readout = Readout()

            def forward(self, x):
                spk, mem = self.lif.init_rleaky()
                spikes = []
                for x_t in x.unbind(0):
                    spk, mem = self.lif(self.fc(x_t), spk, mem)
                    spikes.append(spk)
                return self.readout(torch.stack(spikes))

        m = SnnTorch()
        return m, lambda x, y: F.cross_entropy(m(x), y)
    if name == "norse":
        from norse.torch import LIFParameters, LIFRecurrent

        class Norse(nn.Module):
            def __init__(self):
                super().__init__()
                p = LIFParameters(tau_mem_inv=torch.tensor(1.0 / TAU), v_th=torch.tensor(1.0))
                self.lif = LIFRecurrent(N_IN, HIDDEN, p=p, dt=1.0)
                self.readout = Readout()

            def forward(self, x):
                spikes, _ = self.lif(x)
                return self.readout(spikes)

        m = Norse()
        return m, lambda x, y: F.cross_entropy(m(x), y)
    if name == "spikingjelly":
        from spikingjelly.activation_based import functional, layer, neuron, surrogate

        class Jelly(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = layer.Linear(N_IN, HIDDEN, bias=False, step_mode="m")
                lif = neuron.LIFNode(tau=1.0 / (1.0 - BETA), decay_input=False, v_reset=None,
                                     surrogate_function=surrogate.Sigmoid(), step_mode="s")
                self.rec = layer.LinearRecurrentContainer(lif, HIDDEN, HIDDEN, bias=False,
                                                          step_mode="s")
                self.readout = Readout()

            def forward(self, x):
                functional.reset_net(self)
                i_in = self.fc(x)
                spikes = [self.rec(i_t) for i_t in i_in.unbind(0)]
                return self.readout(torch.stack(spikes))

        m = Jelly()
        return m, lambda x, y: F.cross_entropy(m(x), y)
    raise ValueError(f"unknown peer {name!r}; choose from {PEERS}")


def make_step(name: str, x, y):
    model, loss_fn = build(name)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step():
        loss = loss_fn(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    return model, loss_fn, step


def saved_bytes(name: str, T: int) -> int:
    from spiketrain.strategies.bptt import SavedBytes
    x, y = data(T)
    model, loss_fn, _ = make_step(name, x, y)
    with SavedBytes(exclude=list(model.parameters()) + [x]) as s:
        loss = loss_fn(x, y)
    loss.backward()
    if name.startswith("spiketrain"):  # its bptt strategy counts with the same hook inside
        import spiketrain as st
        return st.last_report().peak_bytes["device"]
    return s.bytes


def _rss_child(name: str, T: int, threads: int) -> None:
    torch.set_num_threads(threads)
    x, y = data(T)
    _, _, step = make_step(name, x, y)
    from spiketrain.hardware.backends import CPUBackend
    b = CPUBackend()
    b.reset_peak()
    before = b.memory_stats()["allocated"]
    step()
    print(json.dumps({"rss": b.memory_stats()["peak"] - before}))


def rss_growth(name: str, T: int, threads: int) -> int | None:
    out = subprocess.run([sys.executable, __file__, "--child", name, str(T), str(threads)],
                         capture_output=True, text=True, timeout=1800)
    for line in out.stdout.splitlines()[::-1]:
        if line.startswith("{"):
            return json.loads(line)["rss"]
    print(f"  ({name} T={T}: memory child failed: {out.stderr.strip().splitlines()[-1:]})")
    return None


def mib(n):
    return "-" if n is None else f"{n / 2**20:.1f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--T", type=int, nargs="+", default=[100, 300, 1000, 3000])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1: timings on a shared machine stay comparable)")
    ap.add_argument("--peers", nargs="+", default=PEERS)
    ap.add_argument("--no-rss", action="store_true", help="skip the fresh-process RSS runs")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        _rss_child(a.child[0], int(a.child[1]), int(a.child[2]))
        return 0
    torch.set_num_threads(a.threads)
    peers = []
    for p in a.peers:
        try:
            build(p)
            peers.append(p)
        except ImportError as e:
            print(f"skipping {p}: {e} (pip install -e '.[bench]')")
    print(f"torch {torch.__version__}, {a.threads} thread(s), batch {BATCH}, "
          f"{N_IN}->{HIDDEN}->{N_OUT}, input rate {RATE:.0%}, median of {a.repeats}")
    rows = []
    for T in a.T:
        x, y = data(T)
        steps = {p: make_step(p, x, y)[2] for p in peers}
        times = {p: [] for p in peers}
        cpu = {p: [] for p in peers}
        for p in peers:
            steps[p]()  # warm-up
        for _ in range(a.repeats):
            for p in peers:
                t, c = time.perf_counter(), time.process_time()
                steps[p]()
                times[p].append(time.perf_counter() - t)
                cpu[p].append(time.process_time() - c)
        del steps
        med = {p: statistics.median(v) for p, v in times.items()}
        cmed = {p: statistics.median(v) for p, v in cpu.items()}
        ref, cref = med.get("spiketrain"), cmed.get("spiketrain")
        for p in peers:
            sb = saved_bytes(p, T)
            rss = None if a.no_rss else rss_growth(p, T, a.threads)
            rows.append((T, p, med[p], cmed[p], sb, rss, cref / cmed[p] if cref else float("nan")))
            print(f"  T={T:5d} {p:16s} {med[p]:8.3f} s/step wall {cmed[p]:8.3f} s cpu  saved "
                  f"{mib(sb):>8s} MiB  RSS+ {mib(rss):>8s} MiB  spiketrain/this {rows[-1][-1]:.2f}x",
                  flush=True)
    print()
    print("| T | implementation | s/step (wall) | s/step (CPU) | saved for backward (MiB) | "
          "peak RSS growth (MiB) | spiketrain / this (CPU time) |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for T, p, t, c, sb, rss, r in rows:
        print(f"| {T} | {p} | {t:.3f} | {c:.3f} | {mib(sb)} | {mib(rss)} | {r:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
