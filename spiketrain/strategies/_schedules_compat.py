"""Run ``checkpoint_schedules`` as plain Python even where numba is installed.

``checkpoint_schedules`` jit-compiles a few helpers with numba when it can import it, and one
of them (``multistage.n_advance``) does not compile under numba 0.68 (``print`` in an error
branch). spiketrain depends on numba for its own kernels, so the schedules' helpers are put
back to their Python functions (what they run as without numba; they are tiny and run once
per schedule step).
"""
from __future__ import annotations

import sys

import checkpoint_schedules  # noqa: F401  (imports all of its modules)


def _unjit(module) -> None:
    for name, obj in list(vars(module).items()):
        py = getattr(obj, "py_func", None)
        if py is not None and callable(py):
            setattr(module, name, py)
    if getattr(module, "numba", None) is not None:
        module.numba = None


for _name, _m in list(sys.modules.items()):
    if _m is not None and (_name == "checkpoint_schedules" or _name.startswith("checkpoint_schedules.")):
        _unjit(_m)
