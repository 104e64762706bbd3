"""The package layering of docs/design.md holds: no import circle between modules, and a
package imports only packages to its left (plus the foundations), except the up-imports
listed here with their reason.

Imports are read with ``ast`` from the source (top-level and function-level alike), so a
circle hidden behind a function-level import is found too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "vlmtune"

# Left to right in the order a sample flows; a module may import its own layer or one to its left.
LAYERS = ["foundation", "metrics", "testing", "data", "model", "train", "evaluate", "report", "diagnose",
          "compare", "zoo", "cli"]
FOUNDATION = {"errors", "atomic", "config", "config_errors", "rundir", "ownership", "families", "__init__"}
CLI = {"cli", "cli_data", "cli_plan", "cli_tools"}  # cli_data.py: the data subcommands, registered on cli.py's
# `data` group; cli_plan.py: `vlmtune plan`'s many flags; cli_tools.py: diagnose, zoo and demo

# (importer, imported) packages that may run upward, and why.
ALLOWED_UP = {
    ("model", "zoo"): "model/load.py resolves `vlmtune/<name>` to the shipped checkpoint's folder",
    ("foundation", "model"): "families/shapes.py reads LoRA target names and resolves model paths",
    ("foundation", "data"): "families/paligemma.py builds PaliGemma's prompt+suffix labels itself",
    ("data", "model"): "data/format_template.py loads the model's processor to render both sides",
    ("report", "diagnose"): "report/diagnostics.py shows the rank analysis' thresholds",
}


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def layer_of(module: str) -> str:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    return "foundation" if top in FOUNDATION else "cli" if top in CLI else top


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """vlmtune modules imported anywhere in ``path`` (a package import counts as its __init__)."""
    tree = ast.parse(path.read_text())
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            if name in modules and name != me:
                found.add(name)
    return found


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PKG.rglob("*.py")}
    return {m: imports_of(p, set(files)) for m, p in files.items()}


def test_layers_cover_every_package():
    unknown = {layer_of(m) for m in graph()} - set(LAYERS)
    assert not unknown, f"packages with no place in LAYERS: {unknown}"


def test_no_import_circles():
    g = graph()
    # A package's __init__ re-exporting its own submodule is not a circle of the code.
    edges = {m: {d for d in deps if not (m.startswith(d + ".") and g.get(d) and m in g[d])} for m, deps in g.items()}
    state: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(edges.get(m, ())):
            if state.get(d) == 1:
                circles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m)
    assert not circles, "import circles: " + "; ".join(" -> ".join(c) for c in circles)


def test_imports_run_left_only_except_listed():
    rank = {name: i for i, name in enumerate(LAYERS)}
    up = set()
    for m, deps in graph().items():
        for d in deps:
            a, b = layer_of(m), layer_of(d)
            if rank[b] > rank[a]:
                up.add((a, b, m, d))
    unexpected = sorted(u for u in up if (u[0], u[1]) not in ALLOWED_UP)
    assert not unexpected, "imports that run up a layer: " + "; ".join(f"{m} -> {d}" for *_, m, d in unexpected)
    unused = set(ALLOWED_UP) - {(a, b) for a, b, *_ in up}
    assert not unused, f"allowed up-imports no longer used (remove them): {unused}"
    assert len(ALLOWED_UP) <= 5


@pytest.mark.parametrize("entry", ["vlmtune.train.train", "vlmtune.evaluate.evaluate", "vlmtune.compare.compare"])
def test_public_entry_points(entry):
    import importlib

    module, _, name = entry.rpartition(".")
    assert callable(getattr(importlib.import_module(module), name))
