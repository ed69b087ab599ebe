"""learnhub_container runs inside containers: it must not reach back into host code.

The image carries ``learnhub_container`` alone; an import of ``hub`` or ``grader`` would work
on the host (where both are installed) and fail only in a course container. Reading the
imports with ``ast`` catches that without building an image.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from tests.harness import ROOT

PACKAGE = ROOT / "learnhub_container"
HOST_PACKAGES = ("hub", "grader")
IMPORT_CALLS = ("import_module", "__import__")


def imported_modules(path: Path) -> Iterator[tuple[int, str]]:
    """``(line, module)`` for every import in the file ``path`` of the repository."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    return imports_in(path.read_text(), package)


def imports_in(source: str, package: str) -> Iterator[tuple[int, str]]:
    """``(line, module)`` for every import in ``source`` (a module of ``package``), relative
    imports made absolute, ``importlib.import_module("...")`` included."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                yield node.lineno, f"{base}.{node.module}" if node.module else base
            else:
                yield node.lineno, node.module or ""
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", ""))
            in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.lineno, node.args[0].value


def reaches(module: str, packages: tuple[str, ...]) -> bool:
    return module.split(".")[0] in packages


def test_nothing_in_the_container_package_imports_host_code() -> None:
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 10, files  # the walk sees the package
    found = [
        f"{path.relative_to(ROOT)}:{line}: {module}"
        for path in files
        for line, module in imported_modules(path)
        if reaches(module, HOST_PACKAGES)
    ]
    assert not found, "learnhub_container must not import hub or grader:\n" + "\n".join(found)


def test_the_sandbox_runner_stands_alone() -> None:
    # grader/sandbox.py copies this one file into each sandbox: not even its own package is there.
    runner = PACKAGE / "sandbox_runner.py"
    found = [m for _, m in imported_modules(runner) if reaches(m, (*HOST_PACKAGES, PACKAGE.name))]
    assert not found, found


def test_the_walk_sees_every_kind_of_import() -> None:
    # The checker itself: each spelling of an import of host code is reported.
    source = (
        "import hub.settings\n"
        "from grader import sandbox\n"
        "from ..exchange import archive\n"
        "import importlib\n"
        "importlib.import_module('hub.courses')\n"
    )
    modules = [m for _, m in imports_in(source, "learnhub_container.exchange")]
    assert modules == [
        "hub.settings",
        "grader",
        "learnhub_container.exchange",
        "importlib",
        "hub.courses",
    ]
