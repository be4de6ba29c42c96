"""Dependencies point one way: hwmodels <- costmodels <- simulator <- {app, validation} <- roofsim (the CLI).

An ``ast`` walk over every module: each package may import only the packages below it, and only
``validation`` imports torch or triton."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ("hwmodels", "costmodels", "simulator", "app", "validation", "roofsim")
ALLOWED = {
    "hwmodels": {"hwmodels"},
    "costmodels": {"hwmodels", "costmodels"},
    "simulator": {"hwmodels", "costmodels", "simulator"},
    "app": {"hwmodels", "costmodels", "simulator", "app"},
    "validation": {"hwmodels", "costmodels", "simulator", "validation"},
    "roofsim": {"hwmodels", "costmodels", "simulator", "validation", "roofsim"},
}
GPU_LIBRARIES = {"torch", "triton"}


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


@pytest.mark.parametrize("package", PROJECT)
def test_imports_point_one_way(package):
    offenders = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for line, name in _imports(path):
            if name in PROJECT and name not in ALLOWED[package]:
                offenders.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
            if name in GPU_LIBRARIES and package != "validation":
                offenders.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert not offenders, "\n".join(offenders)


def test_the_walk_sees_every_package():
    """Guard against the test passing vacuously (a renamed folder would leave nothing to check)."""
    for package in PROJECT:
        assert any(_imports(p) for p in (ROOT / package).rglob("*.py")), package
