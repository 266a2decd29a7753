"""The house has floors: every import points down.

``data`` at the bottom; ``models`` and ``market`` above it and independent of each
other; ``pipelines`` above them; ``serving`` (the HTTP service and every command) on
top. ``benchmarks`` may import anything, and only the command that registers
``creditx bench`` imports it. Lazy imports inside functions count as much as those at
the top of a module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FLOOR = {"data": 0, "models": 1, "market": 1, "pipelines": 2, "serving": 3}
# the one module allowed to import ``benchmarks``
BENCH_REGISTRATION = "serving/cli/app.py"


def imported_packages(path: Path) -> list[tuple[int, str]]:
    """Return ``(line, top-level package)`` of every absolute import in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


def violations(package: str) -> list[str]:
    """Return every import in ``package`` of a package on its own floor or above."""
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        where = path.relative_to(ROOT).as_posix()
        for line, top in imported_packages(path):
            if top == "tests":
                found.append(f"{where}:{line} imports the tests")
            elif top == "benchmarks" and where != BENCH_REGISTRATION:
                found.append(f"{where}:{line} imports benchmarks")
            elif top in FLOOR and top != package and FLOOR[top] >= FLOOR[package]:
                found.append(f"{where}:{line} imports {top} (floor {FLOOR[top]})")
    return found


@pytest.mark.parametrize("package", sorted(FLOOR))
def test_no_module_imports_a_package_on_its_floor_or_above(package: str) -> None:
    assert violations(package) == []


def test_the_walk_sees_lazy_imports_and_would_fail_on_one(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from serving.settings import Settings\n    import pipelines\n")
    assert imported_packages(module) == [(2, "serving"), (3, "pipelines")]


def test_benchmarks_are_imported_by_the_bench_registration_alone() -> None:
    importers = [
        path.relative_to(ROOT).as_posix()
        for package in FLOOR
        for path in (ROOT / package).rglob("*.py")
        if any(top == "benchmarks" for _, top in imported_packages(path))
    ]
    assert importers == [BENCH_REGISTRATION]
