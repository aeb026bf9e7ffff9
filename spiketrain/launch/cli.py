"""``spiketrain`` command line: sub-commands from :data:`spiketrain.launch.commands.COMMANDS`.

Config mistakes (and ValueErrors from the model, strategy and data builders), unreadable or
unwritable files (OSError, naming the path) and a training stopped by the non-finite guard
print ``error: <one line>`` and exit with status 2, no traceback (``SPIKETRAIN_DEBUG=1`` shows
it).
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from .commands import COMMANDS
from .config import ConfigError


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="spiketrain",
        description="Train sparse recurrent models (spiking networks) on long sequences with "
                    "exact, memory-budgeted strategies.",
        epilog="run 'spiketrain COMMAND --help' for a command's options")
    parser.add_argument("--version", action="version", version=f"spiketrain {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"{__package__}.commands.{name}")
        except ImportError as e:  # a command whose optional dependency is missing
            p = sub.add_parser(name, help=f"(unavailable: {e})")
            p.set_defaults(_unavailable=f"command {name!r} is unavailable: {e}")
            continue
        p = mod.add_parser(sub)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``spiketrain`` script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "_unavailable", None):
        print(f"error: {args._unavailable}", file=sys.stderr)
        return 2
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    from ..hardware.backends import HardwareUnavailable
    from ..strategies import BudgetError
    from ..trainer.guard import NonFiniteError

    try:
        return int(args._run(args) or 0)
    except (ConfigError, ValueError, BudgetError, FileNotFoundError, HardwareUnavailable,
            NonFiniteError, OSError) as e:
        if os.environ.get("SPIKETRAIN_DEBUG"):
            raise
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _one_line(e: BaseException) -> str:
    """The error as one line; an OSError names its file (``path: reason``)."""
    if isinstance(e, OSError) and not isinstance(e, FileNotFoundError) and e.strerror:
        where = f"{e.filename}: " if e.filename else ""
        return " ".join(f"{where}{e.strerror}".split())
    return " ".join(str(e).split()) or type(e).__name__


if __name__ == "__main__":
    sys.exit(main())
