"""``spiketrain export RUN_DIR --nir model.nir``: write a trained RSNN as a NIR graph."""
from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "export", help="write a trained run's network as a NIR graph",
        description="Write the trained RSNN of RUN_DIR (weights of snapshot.pt) as a NIR graph "
                    "(input and recurrent weights, LIF/ALIF/adLIF dynamics with their time "
                    "constants and thresholds, leaky readout) for snnTorch, Norse, Lava, "
                    "Rockpool, Sinabs, Spyx or neuromorphic hardware. Import it back with "
                    "spiketrain.models.from_nir(path) or 'model: {name: nir, path: ...}'.",
        epilog="example: spiketrain export runs/shd --nir shd.nir")
    p.add_argument("run_dir", help="run folder of 'spiketrain train' or 'spiketrain adapt'")
    p.add_argument("--nir", required=True, metavar="PATH", help="output file (HDF5)")
    return p


def run(args: argparse.Namespace) -> int:
    from ...models.nir_io import export_nir
    from ..config import ConfigError
    from ._trained import load_trained, run_config

    cfg, _ = run_config(args.run_dir)
    model, _ = load_trained(args.run_dir, cfg)
    dt = cfg.model.kwargs.get("dt")
    if dt is None:
        import inspect
        dt = inspect.signature(type(model)).parameters["dt"].default \
            if "dt" in inspect.signature(type(model)).parameters else None
    if dt is None:
        raise ConfigError("export needs the model's time step (model.dt, ms)")
    try:
        path = export_nir(model, args.nir, float(dt))
    except ValueError as e:
        raise ConfigError(f"export: {' '.join(str(e).split())}") from None
    print(f"NIR graph: {path}  ({len(model.layers)} layer(s), dt {float(dt):g} ms)")
    return 0
