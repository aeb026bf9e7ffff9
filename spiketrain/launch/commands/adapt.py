"""``spiketrain adapt RUN_DIR --dt NEW_DT --method NAME``: zero-shot move of a trained run to
another time step (no training); writes a new run folder."""
from __future__ import annotations

import argparse
from pathlib import Path

import yaml


def add_parser(subparsers) -> argparse.ArgumentParser:
    from ...models.resolution import METHODS

    p = subparsers.add_parser(
        "adapt", help="map a trained run to another time step (zero-shot)",
        description="Re-discretise a trained RSNN for a new time step without training "
                    "(spiketrain.models.resolution) and write a new run folder: config.yaml "
                    "with the new data.dt, data.T (same sample duration) and model.dt / time "
                    "constants, and snapshot.pt with the mapped weights. 'spiketrain evaluate "
                    "OUT', 'spiketrain export OUT' and 'spiketrain train OUT/config.yaml "
                    "--resume OUT' (fine-tuning) accept it.",
        epilog="example: spiketrain adapt runs/shd --dt 5ms --method integral --out runs/shd-5ms")
    p.add_argument("run_dir", help="run folder of 'spiketrain train'")
    p.add_argument("--dt", required=True, help="new step: seconds (0.005) or with a unit (5ms)")
    p.add_argument("--method", default="integral", choices=METHODS,
                   help="mapping (default integral): the paper's proposed integral, expectation, "
                        "euler; baseline = its reference (recompute decays from tau only); "
                        "none = keep the discrete parameters")
    p.add_argument("--out", help="new run folder (default RUN_DIR-dt<ms>ms-<method>)")
    p.add_argument("--evaluate", action="store_true", help="also print the test metrics of "
                                                           "the adapted run")
    return p


def adapt_run(run_dir, dt_s: float, method: str, out=None) -> Path:
    """Write the adapted run folder; returns its path."""
    from ...models.resolution import adapt
    from ...trainer.snapshot import save_snapshot
    from ..build import build_model
    from ..config import ConfigError, validate
    from ._trained import load_trained, run_config

    cfg, raw = run_config(run_dir)
    old_dt = getattr(cfg.data, "dt", None)
    old_T = getattr(cfg.data, "T", None)
    if old_dt is None or old_T is None:
        raise ConfigError(f"adapt needs a data kind with a time step (data.dt, data.T); "
                          f"{getattr(cfg.data, 'kind', '?')!r} has none")
    model, snap = load_trained(run_dir, cfg)
    model_dt = float(cfg.model.kwargs.get("dt", _default(model, "dt", 1.0)))
    ratio = dt_s / float(old_dt)
    try:
        mapped, changes = adapt(model, model_dt, model_dt * ratio, method)
    except ValueError as e:
        raise ConfigError(f"adapt: {' '.join(str(e).split())}") from None
    new_raw = dict(raw)
    model_raw = dict(raw.get("model") or {})
    opts = dict(model_raw.get("neuron_options") or {})
    opts.update(changes.pop("neuron_options", {}))
    model_raw.update(changes)
    if opts:
        model_raw["neuron_options"] = opts
    new_raw["model"] = model_raw
    data_raw = dict(raw.get("data") or {})
    if "duration" in data_raw or getattr(cfg.data, "kind", "") == "synthetic":
        if data_raw.get("duration") is None:
            data_raw["duration"] = float(old_T) * float(old_dt)  # the same samples
    data_raw["dt"] = float(dt_s)
    data_raw["T"] = max(1, int(round(old_T * float(old_dt) / dt_s)))
    new_raw["data"] = data_raw
    out = Path(out) if out else Path(f"{Path(run_dir).as_posix().rstrip('/')}-dt"
                                     f"{dt_s * 1000:g}ms-{method}")
    new_cfg = validate(new_raw, out / "config.yaml")
    rebuilt = build_model(new_cfg)
    try:
        rebuilt.load_state_dict(mapped.state_dict())
    except RuntimeError as e:  # the config must describe the mapped model exactly
        raise ConfigError(f"adapt: the mapped model does not fit its config ({e})") from None
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(new_cfg.to_dict(), sort_keys=False))
    extra = {"adapted": {"from": str(run_dir), "method": method, "dt_source": float(old_dt),
                         "dt_target": float(dt_s), "source_epoch": int(snap["epoch"])},
             "metrics": []}
    # epoch -1 done: 'spiketrain train OUT/config.yaml --resume OUT' fine-tunes from epoch 0
    save_snapshot(out, rebuilt, None, epoch=-1, global_step=int(snap["global_step"]),
                  epoch_done=True, extra=extra)
    return out


def _default(model, name, value):
    import inspect
    p = inspect.signature(type(model)).parameters.get(name)
    return p.default if p is not None and p.default is not inspect.Parameter.empty else value


def run(args: argparse.Namespace) -> int:
    from ._trained import parse_dt

    dt = parse_dt(args.dt)
    out = adapt_run(args.run_dir, dt, args.method, args.out)
    print(f"adapted run folder: {out}  (dt {dt * 1000:g} ms, method {args.method})")
    if args.evaluate:
        from .evaluate import evaluate_run
        row = evaluate_run(out)
        print(f"test after adaptation: " + ", ".join(f"{k[5:]} {v:.4g}" for k, v in row.items()
                                                    if k.startswith("test_")))
    return 0
