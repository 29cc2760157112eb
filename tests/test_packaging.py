"""Packaging: every package our code imports is declared in pyproject.toml, and the locks pin them.

A package that only arrives as another one's dependency (requests under tweepy, kombu under celery)
disappears the day that package drops it; declaring what we import keeps the install honest.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
LOCK = ROOT / "requirements" / "lock.txt"
RUNTIME_LOCK = ROOT / "requirements" / "runtime.txt"

# What ships (installed by `dependencies` alone) and what only the tests and the bench run.
RUNTIME_SOURCES = ["syndicator", "tasks", "celeryproject.py"]
DEV_SOURCES = ["tests", "bench"]
FIRST_PARTY = {"syndicator", "tasks", "celeryproject", "tests", "bench"}


def _requirements(group: str | None) -> list[Requirement]:
    """`dependencies` (group None) or one extra of [project.optional-dependencies]."""
    project = PYPROJECT["project"]
    specs = project["dependencies"] if group is None else project["optional-dependencies"][group]
    return [Requirement(spec) for spec in specs]


def _declared(groups: list[str | None]) -> set[str]:
    return {canonicalize_name(req.name) for group in groups for req in _requirements(group)}


def _python_files(source: str) -> list[Path]:
    path = ROOT / source
    return [path] if path.is_file() else sorted(path.rglob("*.py"))


def _third_party_imports(path: Path) -> dict[str, int]:
    """Top-level module → first line importing it, leaving out the stdlib and our own modules."""
    siblings = {p.stem for p in path.parent.iterdir()}  # bench/pipeline.py imports bench/feedgen.py
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            top = name.partition(".")[0]
            if top in sys.stdlib_module_names or top in FIRST_PARTY or top in siblings:
                continue
            found.setdefault(top, node.lineno)
    return found


def _undeclared(sources: list[str], groups: list[str | None]) -> list[str]:
    declared = _declared(groups)
    distributions = importlib.metadata.packages_distributions()
    problems = []
    for source in sources:
        for path in _python_files(source):
            for module, line in sorted(_third_party_imports(path).items()):
                where = f"{path.relative_to(ROOT)}:{line}"
                dists = {canonicalize_name(d) for d in distributions.get(module, [])}
                if not dists:
                    problems.append(f"{where} imports {module!r}, which no installed distribution provides")
                elif not dists & declared:
                    problems.append(f"{where} imports {module!r} from {sorted(dists)}, not declared")
    return problems


def test_runtime_code_imports_only_declared_dependencies() -> None:
    problems = _undeclared(RUNTIME_SOURCES, [None])
    assert not problems, "add these to [project] dependencies, then `make lock`:\n" + "\n".join(problems)


def test_tests_and_bench_import_only_declared_packages() -> None:
    problems = _undeclared(DEV_SOURCES, [None, "embedded", "dev"])
    assert not problems, "add these to the dev extra, then `make lock`:\n" + "\n".join(problems)


def test_import_scan_sees_undeclared_imports(tmp_path: Path) -> None:
    """The scan itself: a third-party import is found, stdlib and first-party ones are not."""
    module = tmp_path / "sample.py"
    (tmp_path / "helper.py").write_text("")
    module.write_text(
        "import os, json\nimport requests.adapters\nfrom syndicator import errors\n"
        "from . import x\nimport helper\n\ndef f():\n    from markupsafe import Markup\n"
    )
    assert _third_party_imports(module) == {"requests": 2, "markupsafe": 8}


def _pins(lock: Path) -> dict[str, str]:
    """name → version of each `name==version` line of a uv/pip-tools lock; each must carry hashes."""
    text = lock.read_text()
    entries = re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)((?:\s*\\\n\s+--hash=\S+)*)", text, re.M)
    unhashed = [name for name, _, hashes in entries if "--hash=sha256:" not in hashes]
    assert not unhashed, f"{lock.name}: pins without hashes: {unhashed}"
    return {canonicalize_name(name): version for name, version, _ in entries}


def _unpinned(lock: Path, groups: list[str | None]) -> list[str]:
    pins = _pins(lock)
    problems = []
    for group in groups:
        for req in _requirements(group):
            if req.marker is not None and not req.marker.evaluate({"extra": group or ""}):
                continue
            version = pins.get(canonicalize_name(req.name))
            if version is None:
                problems.append(f"{req} is not in {lock.name}")
            elif not req.specifier.contains(version, prereleases=True):
                problems.append(f"{req} does not allow the locked {version}")
    return problems


@pytest.mark.parametrize(
    ("lock", "groups"),
    [(LOCK, [None, "embedded", "dev"]), (RUNTIME_LOCK, [None])],
    ids=["lock", "runtime"],
)
def test_lock_pins_every_declared_requirement(lock: Path, groups: list[str | None]) -> None:
    """A dependency added to pyproject.toml without `make lock` fails here, not in someone's install."""
    problems = _unpinned(lock, groups)
    assert not problems, "pyproject.toml changed without `make lock`:\n" + "\n".join(problems)


def test_runtime_lock_is_the_full_locks_subset() -> None:
    """The image (runtime.txt) runs the versions the tests ran (lock.txt)."""
    full, runtime = _pins(LOCK), _pins(RUNTIME_LOCK)
    differing = {name: (pin, full.get(name)) for name, pin in runtime.items() if full.get(name) != pin}
    assert not differing, f"runtime.txt pins that lock.txt does not (runtime, lock): {differing}"


def test_license_and_type_marker_ship() -> None:
    project = PYPROJECT["project"]
    assert project["license"] == "MIT"
    assert all((ROOT / name).is_file() for name in project["license-files"])
    assert (ROOT / "syndicator" / "py.typed").is_file()
    assert "py.typed" in PYPROJECT["tool"]["setuptools"]["package-data"]["syndicator"]
