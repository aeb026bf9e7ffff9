"""CLI sub-commands: each module exposes ``add_parser(subparsers)`` and ``run(args) -> int``."""
COMMANDS = [
    "train",
    "sweep",
    "report",
    "submit",
    "status",
    "logs",
    "plan",
    "calibrate",
    "estimate",
    "evaluate",
    "adapt",
    "export",
]
