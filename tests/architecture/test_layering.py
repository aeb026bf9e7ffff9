"""The package follows DESIGN.md's arrows: launch -> trainer -> strategies -> models ->
hardware; hardware imports no other spiketrain package; nothing imports launch; no file-level
import cycles; strategies and hardware never test a model's or layer's type."""
import ast
import re
from pathlib import Path

import spiketrain

ROOT = Path(spiketrain.__file__).resolve().parent
RANK = {"hardware": 0, "data": 1, "models": 1, "strategies": 2, "trainer": 3, "launch": 4}


def _modules():
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path


def _imports(name: str, path: Path, top_level_only: bool):
    """spiketrain modules imported by ``name`` (absolute names)."""
    tree = ast.parse(path.read_text())
    is_pkg = path.name == "__init__.py"
    base = name.split(".") if is_pkg else name.split(".")[:-1]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    out = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                pkg = base[:len(base) - node.level + 1]
                mod = ".".join(pkg + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.startswith("spiketrain"):
                out.add(mod)
                for a in node.names:   # "from . import x" imports the submodule x
                    out.add(f"{mod}.{a.name}")
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("spiketrain"))
    return out


def _package(mod: str) -> str | None:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in RANK else None


def test_arrows_point_one_way():
    bad = []
    for name, path in _modules():
        src = _package(name)
        if src is None:
            continue
        for dep in _imports(name, path, top_level_only=False):
            dst = _package(dep)
            if dst is None or dst == src:
                continue
            if dst == "launch" or (src == "hardware") or RANK[dst] > RANK[src]:
                bad.append(f"{name} imports {dep}")
    assert not bad, "imports against DESIGN.md's arrows:\n" + "\n".join(bad)


def test_no_import_cycles_between_files():
    mods = dict(_modules())
    graph = {n: {d for d in _imports(n, p, top_level_only=True) if d in mods and d != n}
             for n, p in mods.items()}
    # a package's __init__ importing its own submodules is how packages are built, and a
    # submodule importing its parent package's name is the same edge seen from below: only
    # cycles between files of which neither is the other's package count
    def related(a, b):
        return a.startswith(b + ".") or b.startswith(a + ".")

    state: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for d in graph[n]:
            if related(n, d):
                continue
            if state.get(d) == 1:
                cyc = stack[stack.index(d):] + [d]
                if not all(related(a, b) for a, b in zip(cyc, cyc[1:])):
                    cycles.append(" -> ".join(cyc))
            elif d not in state:
                visit(d)
        stack.pop()
        state[n] = 2

    for n in graph:
        if n not in state:
            visit(n)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_no_type_checks_on_model_classes_outside_models():
    pat = re.compile(r"(isinstance|issubclass)\([^)]*\b(LIFLayer|ALIFLayer|RSNN|NeuronLayer)\b"
                     r"|type\([^)]*\)\s*(not\s+)?in\s*\(?[^)]*\b(LIFLayer|ALIFLayer|RSNN)\b")
    bad = []
    for name, path in _modules():
        if _package(name) == "models":
            continue
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if pat.search(line):
                bad.append(f"{path.relative_to(ROOT.parent)}:{i}: {line.strip()}")
    assert not bad, "type checks on model classes outside models/:\n" + "\n".join(bad)
