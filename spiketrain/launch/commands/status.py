"""``spiketrain status JOB``: the state of a submitted cluster run."""
from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("status", help="status of a job from `spiketrain submit`",
                              description="Print the status (PENDING, RUNNING, SUCCEEDED, FAILED, "
                                          "STOPPED) of a Ray job.")
    p.add_argument("job", help="job id printed by `spiketrain submit`")
    p.add_argument("--address", help="Ray Jobs address (default: an http $RAY_ADDRESS, else "
                   "http://127.0.0.1:8265)")
    return p


def run(args: argparse.Namespace) -> int:
    from .. import jobs

    s = jobs.status(args.job, args.address)
    msg = f"  ({s['message']})" if s["message"] else ""
    print(f"{s['job']}: {s['status']}{msg}")
    return 0
