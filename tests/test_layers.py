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


# --- one home per formula ------------------------------------------------------------------------


def _functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return {node.name.lstrip("_") for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)}


def _public_functions(*paths: Path) -> set[str]:
    return {name for p in paths for name in _functions(p) if not name.startswith("test")}


def test_utilisation_metrics_live_in_one_module():
    """S-MBU/S-MFU, MFU and NanoFlow's optimum are defined in simulator/metrics.py only."""
    metrics = ROOT / "simulator" / "metrics.py"
    names = {"sparse_utilisation", "optimal_tokens_per_s_per_gpu", "mfu", "mbu",
             "calibrated_ceilings", "dominant_phase"}
    assert names <= _functions(metrics)
    twins = [f"{p.relative_to(ROOT)} defines {n}" for package in PROJECT for p in sorted((ROOT / package).rglob("*.py"))
             if p != metrics for n in _functions(p) & names]
    assert not twins, "\n".join(twins)


def test_the_app_holds_no_formula():
    """The explorer reads numbers from the public API: it imports no costmodels module, evaluates no
    efficiency curve of a profile (``profile.kind(k).compute(size)``) and re-defines no function of
    costmodels or simulator.metrics (a copy of a formula under the same name)."""
    formulas = _public_functions(*(ROOT / "costmodels").rglob("*.py"), ROOT / "simulator" / "metrics.py")
    offenders = []
    for path in sorted((ROOT / "app").rglob("*.py")):
        where = path.relative_to(ROOT)
        offenders += [f"{where}:{line} imports costmodels" for line, name in _imports(path) if name == "costmodels"]
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("compute", "memory") and isinstance(node.func.value, ast.Call)
                    and isinstance(node.func.value.func, ast.Attribute) and node.func.value.func.attr == "kind"):
                offenders.append(f"{where}:{node.lineno} evaluates an efficiency curve")
        offenders += [f"{where} defines {name}" for name in _functions(path) & formulas]
    assert not offenders, "\n".join(offenders)
