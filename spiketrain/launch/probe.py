"""Does the Python that runs a submitted job have what spiketrain needs?

Standard library only: ``spiketrain submit`` ships this file as the job's first command
(``python spiketrain_probe.py && python -m spiketrain.launch.cli train ...``), so a cluster
whose Python lacks torch (a head started outside the environment) ends the job with one line
saying what is missing and how to fix it, instead of a ``ModuleNotFoundError`` traceback.
"""
from __future__ import annotations

import importlib.util
import sys

#: import name -> what to install
NEEDS = {"torch": "torch==2.13.0", "numpy": "numpy", "yaml": "pyyaml", "pyarrow": "pyarrow",
         "h5py": "h5py", "tqdm": "tqdm", "checkpoint_schedules": "checkpoint-schedules==1.0.4",
         "ray": "ray[default,train]==2.60.0"}
MARK = "spiketrain: the cluster's Python"


def missing(needs: dict[str, str] = NEEDS) -> list[str]:
    """What to install for the import names of ``needs`` that this Python cannot find."""
    return [pip for mod, pip in needs.items() if importlib.util.find_spec(mod) is None]


def message(miss: list[str], executable: str = sys.executable) -> str:
    """The one line printed when something is missing."""
    return (f"{MARK} ({executable}) lacks {', '.join(miss)}: install them where the Ray head "
            f"and nodes run (pip install {' '.join(repr(m) if '[' in m else m for m in miss)}) "
            f"and restart Ray, or let the job install them: spiketrain submit ... "
            + " ".join(f"--pip {m}" for m in miss))


def main() -> int:
    miss = missing()
    if miss:
        print(message(miss), flush=True)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
