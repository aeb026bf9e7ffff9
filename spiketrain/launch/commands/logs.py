"""``spiketrain logs JOB``: the output of a submitted cluster run."""
from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("logs", help="logs of a job from `spiketrain submit`",
                              description="Print the logs of a Ray job (--follow: stream them "
                                          "until it ends).")
    p.add_argument("job", help="job id printed by `spiketrain submit`")
    p.add_argument("--address", help="Ray Jobs address (default: an http $RAY_ADDRESS, else "
                   "http://127.0.0.1:8265)")
    p.add_argument("--follow", "-f", action="store_true", help="stream until the job ends")
    return p


def run(args: argparse.Namespace) -> int:
    from .. import jobs

    if args.follow:
        jobs.follow(args.job, args.address)
    else:
        print(jobs.logs(args.job, args.address), end="")
    return 0
