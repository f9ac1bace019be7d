"""What the services import is what pyproject.toml declares: no more, no less, nothing of tests."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from testkit import ROOT

SERVICES = ROOT / "services"
OWN = {"services", "sim"}


def _requirement_names(requirements: list[str]) -> set[str]:
    return {_normal(re.match(r"[A-Za-z0-9_.\-]+", r).group()) for r in requirements}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _third_party(names: set[str]) -> set[str]:
    return {n for n in names if n not in sys.stdlib_module_names and n not in OWN}


def _distributions(module: str) -> set[str]:
    return {_normal(d) for d in metadata.packages_distributions().get(module, [])}


def _shims() -> list[Path]:
    return sorted(
        p for p in SERVICES.glob("*/shim/*") if p.is_file() and "__pycache__" not in p.parts
    )


def test_every_module_the_services_import_is_a_declared_runtime_dependency() -> None:
    runtime = _requirement_names(_project()["dependencies"])
    test_only = _requirement_names(_project()["optional-dependencies"]["test"]) - runtime
    undeclared, from_tests = {}, {}
    for path in sorted(SERVICES.rglob("*.py")):
        for module in _third_party(_imports(path)):
            dists = _distributions(module)
            assert dists, f"{path}: imports {module}, which no installed distribution provides"
            if dists & test_only:
                from_tests[str(path.relative_to(ROOT))] = module
            elif not dists & runtime:
                undeclared[str(path.relative_to(ROOT))] = module
    assert not undeclared, f"imported but not in [project] dependencies: {undeclared}"
    assert not from_tests, f"imported from the test extra: {from_tests}"


def test_every_declared_runtime_dependency_is_imported() -> None:
    runtime = _requirement_names(_project()["dependencies"])
    used: set[str] = set()
    for path in SERVICES.rglob("*.py"):
        for module in _third_party(_imports(path)):
            used |= _distributions(module)
    assert runtime <= used, f"declared but imported nowhere: {sorted(runtime - used)}"


def test_shims_use_the_standard_library_only() -> None:
    shims = _shims()
    assert shims, "no shim found under services/*/shim/"
    for path in shims:
        outside = {n for n in _imports(path) if n not in sys.stdlib_module_names}
        assert not outside, f"{path.relative_to(ROOT)} imports {sorted(outside)}"
