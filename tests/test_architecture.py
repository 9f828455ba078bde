"""The layers of the package as a checked contract (docs/architecture.md).

Every import statement of every module of ``shareverse_env`` (its ``models`` and ``wrappers``
trees included, under their installed names) is read from the source, imports inside functions
and under ``TYPE_CHECKING`` too. Two rules hold:

1. a subsystem imports only the subsystems :data:`ALLOWED` lists for it (which lie below it);
2. no module imports itself back through others: the module graph has no circle.

A module inside a subsystem imports its siblings by their own modules, never through the
subsystem's ``__init__`` (that would be a circle through the import surface).
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TREES = {
    "shareverse_env": "shareverse_env",
    "models": "shareverse_env.models",
    "wrappers": "shareverse_env.wrappers",
}

ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "world": {"core"},
    "memory": {"core"},
    "scene": {"core"},
    "models": {"core"},
    "data": {"core", "world"},
    "backends": {"core", "world", "memory", "scene", "models"},
    "training": {"core", "models", "scene", "memory", "data"},
    "envs": {"core", "world", "backends"},
    "policies": {"core", "world", "envs"},
    "wrappers": {"core", "world", "envs", "policies"},
    "evaluation": {"core", "world", "memory", "scene", "models", "backends", "data"},
    "root": {"envs"},
    "cli": {
        "root",
        "core",
        "world",
        "envs",
        "backends",
        "policies",
        "wrappers",
        "data",
        "models",
        "training",
        "scene",
        "memory",
        "evaluation",
    },
}
"""Which subsystems each may import (besides itself). ``root`` is ``shareverse_env/__init__.py``,
the public entry points; ``training`` is ``shareverse_env.models.training``, which runs the
model inside the scene cache and on the dataset, so it sits above both."""


def subsystem(module: str) -> str:
    """The subsystem a module belongs to."""
    parts = module.split(".")
    if len(parts) == 1:
        return "root"
    if parts[1] == "models" and len(parts) > 2 and parts[2] == "training":
        return "training"
    return parts[1]


@cache
def modules() -> dict[str, Path]:
    """Every module of the package by its installed dotted name."""
    found = {}
    for folder, name in TREES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT / folder).with_suffix("").parts
            if rel[-1] == "__init__":
                rel = rel[:-1]
            if rel and rel[0] in TREES.keys() - {folder} and folder == "shareverse_env":
                continue
            found[".".join((name, *rel))] = path
    return found


def _imports(module: str, path: Path) -> list[tuple[int, str]]:
    """``(line, imported module)`` for every import statement of the module, resolved to a
    module of the package where it names one (``from pkg import submodule`` included)."""
    known = modules()
    is_package = path.name == "__init__.py"
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            targets = [
                f"{source}.{alias.name}" if f"{source}.{alias.name}" in known else source
                for alias in node.names
            ]
        else:
            continue
        for target in targets:
            while target and target not in known and "." in target:
                target = target.rpartition(".")[0]
            if target in known:
                found.append((node.lineno, target))
    return found


@cache
def graph() -> dict[str, set[str]]:
    return {m: {t for _, t in _imports(m, p)} - {m} for m, p in modules().items()}


def test_the_contract_itself_has_no_circle_and_names_every_subsystem():
    present = {subsystem(m) for m in modules()}
    assert present == set(ALLOWED), present ^ set(ALLOWED)
    order, state = [], {}

    def visit(name, trail):
        if state.get(name) == "done":
            return
        assert state.get(name) != "open", f"the contract has a circle: {' -> '.join(trail)}"
        state[name] = "open"
        for dep in ALLOWED[name]:
            visit(dep, [*trail, dep])
        state[name] = "done"
        order.append(name)

    for name in ALLOWED:
        visit(name, [name])


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_each_subsystem_imports_only_the_layers_below_it(layer):
    wrong = [
        f"{m} (line {line}) imports {t}"
        for m, p in modules().items()
        if subsystem(m) == layer
        for line, t in _imports(m, p)
        if subsystem(t) != layer and subsystem(t) not in ALLOWED[layer]
    ]
    assert not wrong, "\n".join(wrong)


def test_no_module_imports_itself_back():
    edges = graph()
    index, low, stack, on_stack, circles = {}, {}, [], set(), []

    def connect(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            connect(v)
    assert not circles, "import circles:\n" + "\n".join(" <-> ".join(c) for c in circles)


def test_the_checker_sees_imports_inside_functions(tmp_path):
    path = tmp_path / "probe.py"
    path.write_text("def f():\n    from shareverse_env.envs.parallel import EnvConfig\n")
    assert (2, "shareverse_env.envs.parallel") in _imports("shareverse_env.core.probe", path)


@pytest.mark.parametrize("layer", sorted(set(ALLOWED) - {"root", "cli"}))
def test_each_subsystem_has_one_import_surface(layer):
    # The package's __init__ names what the subsystem offers (``__all__``), and every name there
    # resolves: the one place a reader looks for a subsystem's public API.
    import importlib

    surfaces = [
        m for m, p in modules().items() if subsystem(m) == layer and p.name == "__init__.py"
    ]
    top = min(surfaces, key=len)
    package = importlib.import_module(top)
    assert getattr(package, "__all__", None), f"{top} has no __all__"
    missing = [name for name in package.__all__ if not hasattr(package, name)]
    assert not missing, f"{top}.__all__ names what it does not hold: {missing}"
