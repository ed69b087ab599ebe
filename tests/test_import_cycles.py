"""The ``hub`` and ``grader`` packages import each other's modules without a cycle.

A cycle (as ``hub/service/app.py`` had: it imported its route modules, which imported it back
for their base classes) means no module of it can be read, tested or imported on its own, and
the import order decides which names exist yet. The graph is read from the source with
:mod:`ast`, so it also sees imports inside functions (the usual way a cycle is hidden from the
interpreter).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("hub", "grader")


def module_name(path: Path) -> str:
    """``hub/service/app.py`` -> ``hub.service.app``; ``hub/store/__init__.py`` -> ``hub.store``."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_modules() -> dict[str, Path]:
    """Every module of the packages, by dotted name."""
    return {
        module_name(path): path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
    }


def imported_names(path: Path, module: str, modules: set[str]) -> Iterator[str]:
    """Dotted names of what ``module`` imports anywhere in its source.

    ``from X import y`` names the module ``X.y`` when there is one (``from hub.service import
    charts``), else ``X`` itself (``from hub.store import Database``).
    """
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                # A relative import counts from the package: the module itself for __init__.
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                yield submodule if submodule in modules else base


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of the packages it imports (the longest known dotted prefix)."""
    modules = source_modules()
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        graph[module] = set()
        for name in imported_names(path, module, set(modules)):
            parts = name.split(".")
            while parts and ".".join(parts) not in modules:
                parts.pop()  # an outside package, or a name inside a module
            if parts and ".".join(parts) != module:
                graph[module].add(".".join(parts))
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as ``[a, b, ..., a]``, or None when the graph is acyclic."""
    done: set[str] = set()
    path: list[str] = []
    on_path: set[str] = set()

    def visit(node: str) -> list[str] | None:
        path.append(node)
        on_path.add(node)
        for target in sorted(graph.get(node, ())):
            if target in on_path:
                return [*path[path.index(target) :], target]
            if target not in done:
                found = visit(target)
                if found:
                    return found
        path.pop()
        on_path.discard(node)
        done.add(node)
        return None

    for start in sorted(graph):
        if start not in done:
            found = visit(start)
            if found:
                return found
    return None


def test_finder_sees_a_cycle_through_a_function_level_import() -> None:
    graph = {
        "hub.service.app": {"hub.service.pages"},
        "hub.service.pages": {"hub.service.app", "hub.courses"},
        "hub.courses": set(),
    }
    assert find_cycle(graph) == ["hub.service.app", "hub.service.pages", "hub.service.app"]
    assert find_cycle({**graph, "hub.service.pages": {"hub.courses"}}) is None


def test_graph_resolves_submodules_and_attributes() -> None:
    graph = import_graph()
    # ``from hub.service import charts`` is an edge to the submodule, not the package.
    assert "hub.service.charts" in graph["hub.service.dashboards"]
    # ``from hub.store import Database``: an attribute of the package, so the package.
    assert "hub.store" in graph["hub.service.__main__"]


def test_hub_and_grader_have_no_import_cycle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])
