"""``spiketrain plan CONFIG --budget device=2GiB``: rank the memory strategies without training."""
from __future__ import annotations

import argparse


def _budget(items: list[str]) -> dict[str, int]:
    from ...hardware.tiers import TIER_NAMES
    from ...hardware.units import parse_size
    from ..config import ConfigError

    out = {}
    for item in items:
        for part in item.split(","):
            tier, sep, size = part.partition("=")
            tier = tier.strip()
            if not sep or tier not in TIER_NAMES:
                raise ConfigError(f"--budget {part!r}: write TIER=SIZE with TIER one of "
                                  f"{', '.join(TIER_NAMES)}, e.g. --budget device=2GiB")
            try:
                out[tier] = parse_size(size)
            except ValueError as e:
                raise ConfigError(f"--budget {part!r}: {e}") from None
    return out


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "plan", help="rank memory strategies for a config and a memory budget (no training)",
        description="Probe the config's model for a few steps on a batch of the config's shape "
                    "(T = data.T, B = trainer.batch_size, Poisson input spikes at --rate), then "
                    "print every strategy's plan: bytes per tier, whether it fits the budget, "
                    "recomputed steps and estimated seconds per training step, fastest first.",
        epilog="example: spiketrain plan configs/shd_rsnn.yaml --budget device=2GiB "
               "--set data.T=100000")
    p.add_argument("config", help="YAML config file (e.g. configs/shd_rsnn.yaml)")
    p.add_argument("--budget", action="append", default=[], metavar="TIER=SIZE",
                   help="memory budget per tier (repeatable or comma-separated), e.g. "
                        "device=2GiB,disk=100GiB; tiers: device, host, disk")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value by dotted key, e.g. --set data.T=100000")
    p.add_argument("--rate", type=float, default=0.02,
                   help="input spike rate of the probe batch (default 0.02)")
    p.add_argument("--probe-steps", type=int, default=128, help="steps timed per probe (default 128)")
    return p


class _Poisson:
    """Seeded Poisson spikes [T, B, N] generated per window on demand (never all at once)."""

    def __init__(self, T, B, N, rate, seed=0):
        import torch

        self.shape = torch.Size((T, B, N))
        self.rate, self.seed = rate, seed

    def dim(self):
        return 3

    def dense(self, t0=0, t1=None, dtype=None):
        import torch

        t1 = self.shape[0] if t1 is None else t1
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + t0)
        x = (torch.rand((t1 - t0,) + tuple(self.shape[1:]), generator=g) < self.rate)
        return x.to(dtype or torch.float32)


def run(args: argparse.Namespace) -> int:
    from ...strategies import get
    from ...hardware.units import format_size
    from ..build import build_model
    from ..config import ConfigError, load_config

    cfg = load_config(args.config, args.overrides)
    budget = _budget(args.budget)
    if not 0 <= args.rate <= 1:
        raise ConfigError(f"--rate {args.rate}: a spike rate is between 0 and 1")
    model = build_model(cfg)
    T, B = int(cfg.data.T), int(cfg.trainer.batch_size)
    n_in = int(getattr(model, "n_in", getattr(cfg.data, "n_in", 700)))
    auto = get("auto", budget=budget, probe_steps=args.probe_steps)
    rows = auto.rank(model, _Poisson(T, B, n_in, args.rate))
    pr = auto.probe_result
    print(f"model {cfg.model.target}, T={T}, batch {B}, inputs {n_in} at rate {args.rate:g}; budget "
          + (", ".join(f"{t}={format_size(v)}" for t, v in budget.items()) or "none"))
    print(f"probe ({pr['k']} steps): {1e3 * pr['c_f']:.3f} ms/step without graph, "
          f"{1e3 * pr['c_g']:.3f} ms/step with graph + backward")
    print(auto.format_table(rows))
    best = next((c for c in rows if c.fits), None)
    if best is None:
        print("no strategy fits this budget: raise it (e.g. --budget device=...) or shorten data.T")
        return 1
    opts = ", ".join(f"{k}={v}" for k, v in best.options.items())
    print(f"choice: {best.name}" + (f" ({opts})" if opts else "") + f" - {best.why}")
    return 0
