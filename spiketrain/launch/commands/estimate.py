"""``spiketrain estimate CONFIG``: attention latency and energy per token, gain-cell vs GPU."""
from __future__ import annotations

import argparse
import inspect
import json

from ..config import ConfigError, load_config


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "estimate", help="attention latency and energy per token: gain-cell circuit vs a GPU",
        description="Estimate the attention's latency and energy per generated token of a "
                    "gaincell_gpt config: the paper's gain-cell circuit figures beside a "
                    "roofline estimate on a device profile (peak FLOP/s, memory bandwidth, "
                    "an assumed board power).",
        epilog="example: spiketrain estimate configs/gaincell_lm.yaml --device h100")
    p.add_argument("config", help="YAML config with a gaincell_gpt model")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set model.window=2048")
    p.add_argument("--device", default="h100", metavar="PROFILE",
                   help="device profile for the GPU side: a100, h100, cuda (this GPU), cpu "
                        "(measured here) (default h100)")
    p.add_argument("--batch", type=int, default=1,
                   help="sequences decoded together on the GPU; per-token figures divide by "
                        "it (default 1)")
    p.add_argument("--bytes", dest="bytes_per_value", type=int, default=2, choices=(1, 2, 4),
                   help="bytes per stored key/value on the GPU (default 2, fp16)")
    p.add_argument("--power", type=float, default=None, metavar="WATTS",
                   help="GPU power while attention runs (default: the card's rated power)")
    p.add_argument("--efficiency", type=float, default=0.5,
                   help="fraction of peak FLOP/s and bandwidth reached (default 0.5)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return p


def attention_shape(cfg):
    """The :class:`AttentionShape` of a config's model (its defaults filled in)."""
    from ...models import resolve
    from ...models.gaincell.estimate import AttentionShape

    cls = resolve(cfg.model.target)
    params = {k: v.default for k, v in inspect.signature(cls).parameters.items()
              if v.default is not inspect.Parameter.empty}
    params.update(cfg.model.kwargs)
    missing = [k for k in ("n_layer", "n_head", "n_embd", "window") if k not in params]
    if missing:
        raise ConfigError(f"model {cfg.model.target!r} has no {', '.join(missing)}; estimate "
                          f"needs a gaincell_gpt-like model (n_layer, n_head, n_embd, window)")
    n_embd, n_head = int(params["n_embd"]), int(params["n_head"])
    if n_head <= 0 or n_embd % n_head:
        raise ConfigError(f"model.n_embd={n_embd} is not a multiple of model.n_head={n_head}")
    return AttentionShape(int(params["n_layer"]), n_head, n_embd // n_head, int(params["window"]))


def run(args: argparse.Namespace) -> int:
    from ...hardware.profiles import get_profile
    from ...models.gaincell.estimate import format_table, gaincell_estimate, gpu_estimate

    cfg = load_config(args.config, args.overrides)
    shape = attention_shape(cfg)
    try:
        profile = get_profile(args.device)
    except RuntimeError as e:
        raise ConfigError(f"--device {args.device}: {e}") from None
    gc = gaincell_estimate(shape)
    gpu = gpu_estimate(shape, profile, batch=args.batch, bytes_per_value=args.bytes_per_value,
                       power_w=args.power, efficiency=args.efficiency)
    if args.json:
        print(json.dumps({"shape": vars(shape), "gaincell": vars(gc), "gpu": vars(gpu),
                          "latency_ratio": gpu.latency_s / gc.latency_s,
                          "energy_ratio": gpu.energy_j / gc.energy_j}, indent=1))
    else:
        print(format_table(shape, gc, gpu))
    return 0
