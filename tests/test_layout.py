"""The code's layout by pipeline stage (docs/architecture.md): every import goes down a floor or stays on its own,
and no module imports itself back through others.

Imports are read from the source with ``ast`` (not by importing), including the ones inside functions: a lazy import
is still a dependency, and hiding a cycle inside a function does not remove it.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Packages, lowest floor first. A module may import from its own floor and the floors below, never from above.
FLOORS: dict[str, int] = {
    "core": 0,
    "scrape": 1, "db": 1,
    "model": 2,
    "workflows": 3,
    "annotator": 4,
    "cli": 5,
}
# Inside model/, the stages in the order they build on each other.
MODEL_FLOORS: dict[str, int] = {"network": 0, "directions": 1, "evaluation": 2, "training": 3, "benchmarks": 4}
# What the pure packages must never import, whatever the floors say.
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "core": ("streamlit", "sqlalchemy", "torch"),
    "model": ("db", "streamlit", "sqlalchemy", "alembic", "workflows", "annotator", "cli"),
    "scrape": ("db", "streamlit", "sqlalchemy"),
    "db": ("streamlit", "torch"),
    "workflows": ("streamlit",),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in FLOORS:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts:  # Alembic's scripts are loaded by Alembic, not imported by the code
                continue
            found[module_name(path)] = path
    return found


def imports_of(path: Path, name: str, known: set[str]) -> set[str]:
    """The project modules (or outside top-level packages) this file imports, resolved to module names."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in known else base)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imports_of(path, name, set(modules)) for name, path in modules.items()}


def floor_of(module: str) -> tuple[int, int] | None:
    parts = module.split(".")
    if parts[0] not in FLOORS:
        return None
    inner = MODEL_FLOORS.get(parts[1], -1) if parts[0] == "model" and len(parts) > 1 else -1
    return FLOORS[parts[0]], inner


def test_every_package_is_on_a_floor():
    """A new top-level package must be placed on a floor here (and in docs/architecture.md) before it is used."""
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests"}
    assert packages <= set(FLOORS), f"packages without a floor: {sorted(packages - set(FLOORS))}"
    stages = {p.parent.name for p in (ROOT / "model").glob("*/__init__.py")}
    assert stages <= set(MODEL_FLOORS), f"model/ stages without a floor: {sorted(stages - set(MODEL_FLOORS))}"
    assert not [p.name for p in (ROOT / "model").glob("*.py") if p.name != "__init__.py"], \
        "model/ holds its code in stage subpackages only"


def test_no_import_goes_up_a_floor(graph):
    upward = []
    for module, imported in graph.items():
        here = floor_of(module)
        for target in imported:
            there = floor_of(target)
            if here is None or there is None:
                continue
            same_package = module.split(".")[0] == target.split(".")[0]
            # Between model's stages the inner floors apply; between packages only the package floors.
            if there[0] > here[0] or (same_package and here[0] == FLOORS["model"] and there[1] > here[1]):
                upward.append(f"{module} → {target}")
    assert not upward, "imports that climb a floor:\n" + "\n".join(sorted(upward))


def test_pure_packages_import_nothing_they_must_not(graph):
    wrong = []
    for module, imported in graph.items():
        banned = FORBIDDEN.get(module.split(".")[0], ())
        wrong += [f"{module} → {target}" for target in imported if target.split(".")[0] in banned]
    assert not wrong, "imports a package must not make:\n" + "\n".join(sorted(wrong))


def test_no_import_cycle(graph):
    inside = {m: {t for t in targets if t in graph and t != m} for m, targets in graph.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for target in sorted(inside[module]):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[module] = 2
        return None

    for module in sorted(inside):
        if module not in state and (cycle := visit(module)):
            pytest.fail("import cycle: " + " → ".join(cycle))


def test_the_checker_sees_an_upward_import(tmp_path):
    """The floor check must be able to fail: a db module importing model is caught."""
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from model.directions import scores\n")
    imported = imports_of(sample, "db.sample", {"model.directions.scores"})
    assert imported == {"model.directions.scores"}
    assert floor_of("model.directions.scores")[0] > floor_of("db.sample")[0]
