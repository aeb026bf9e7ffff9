"""``spiketrain submit CONFIG --address http://HEAD:8265``: the same run on a cluster (Ray Jobs)."""
from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "submit", help="submit a training run to a Ray cluster (Ray Jobs)",
        description="Validate CONFIG (with --set overrides) locally, then run `spiketrain train` "
                    "on the cluster through Ray Jobs; the config and the spiketrain package "
                    "travel with the job (runtime_env working_dir + py_modules). Prints the job "
                    "id for `spiketrain status JOB` and `spiketrain logs JOB`.",
        epilog="example: spiketrain submit configs/shd_rsnn.yaml --address http://head:8265 "
               "--workers 4 --wait")
    p.add_argument("config", help="YAML config file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value (repeatable)")
    p.add_argument("--address", help="Ray Jobs address of the head (default: an http "
                   "$RAY_ADDRESS, else http://127.0.0.1:8265)")
    p.add_argument("--workers", type=int, metavar="N", help="Ray Train workers on the cluster "
                   "(default: trainer.workers)")
    p.add_argument("--pip", action="append", default=[], metavar="REQ",
                   help="extra pip requirement installed for the job (repeatable)")
    p.add_argument("--job-id", help="submission id (default: generated)")
    p.add_argument("--out", metavar="URI", help="run folder on storage that every node and "
                   "this machine reach (s3://bucket/runs/exp1, gs://..., or a shared path); "
                   "default trainer.out_dir. Without it the results stay in the job's "
                   "working directory on the cluster")
    p.add_argument("--wait", action="store_true", help="wait for the job to end, then print "
                   "its logs; exit status 0 only if it succeeded")
    return p


def run(args: argparse.Namespace) -> int:
    from .. import jobs
    from ..config import load_config
    from ..ray_dispatch import _register_sections  # noqa: F401  (deepspeed: section)

    cfg = load_config(args.config, args.overrides)
    from ...trainer.storage import display
    extra = ["--workers", str(args.workers)] if args.workers else []
    out = args.out or cfg.trainer.out_dir
    if out:
        extra += ["--out", str(out)]
    job = jobs.submit(cfg.to_dict(), args.address, train_args=extra, pip=args.pip or None,
                      submission_id=args.job_id)
    addr = jobs.jobs_address(args.address)
    print(f"submitted {job} to {addr}")
    if out:
        print(f"results: {display(str(out))}  (spiketrain report {display(str(out))})")
    else:
        print("results: in the job's working directory on the cluster; give --out "
              "s3://bucket/runs/NAME (or shared storage) to find them afterwards")
    print(f"  spiketrain status {job} --address {addr}\n  spiketrain logs {job} --address {addr}",
          flush=True)
    if not args.wait:
        return 0
    final = jobs.wait(job, args.address)
    text = jobs.logs(job, args.address)
    print(text, end="")
    print(f"job {job}: {final}")
    missing = jobs.missing_line(text) if final != "SUCCEEDED" else None
    if missing:
        import sys
        print(f"error: {missing}", file=sys.stderr)
    return 0 if final == "SUCCEEDED" else 1
