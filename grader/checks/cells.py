"""The cells the checks work on: nbgrader test cells and solution cells of a notebook.

An autograder test cell has ``nbgrader.grade: true`` and no ``nbgrader.solution``; a solution
cell has ``nbgrader.solution: true``. The names a learner's solution defines (functions,
classes, module-level variables of the solution cells) are what the tests call: the static
check follows them through the test cells, the dynamic check replaces them by a cheater.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
from IPython.core.inputtransformer2 import TransformerManager
from nbformat import NotebookNode


@dataclass(frozen=True)
class Cell:
    """One code cell of a notebook, with its nbgrader role."""

    index: int
    cell_id: str
    grade_id: str
    source: str
    is_test: bool
    is_solution: bool
    points: float


def read_notebook(path: Path) -> NotebookNode:
    """The notebook at ``path`` (nbformat 4)."""
    nb: NotebookNode = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
    return nb


def nbgrader_meta(cell: Any) -> dict[str, Any]:
    """``metadata.nbgrader`` of a cell, or an empty dict."""
    meta = cell.get("metadata", {}).get("nbgrader") or {}
    return dict(meta)


def code_cells(nb: NotebookNode) -> list[Cell]:
    """Every code cell of ``nb`` in order, with its nbgrader role."""
    cells = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        meta = nbgrader_meta(cell)
        solution = bool(meta.get("solution"))
        cells.append(
            Cell(
                index=index,
                cell_id=str(cell.get("id", "")),
                grade_id=str(meta.get("grade_id", "")),
                source=cell.source,
                is_test=bool(meta.get("grade")) and not solution,
                is_solution=solution,
                points=float(meta.get("points") or 0),
            )
        )
    return cells


def python_source(source: str) -> str:
    """A cell's source with IPython syntax (``%magic``, ``!cmd``) turned into Python.

    IPython's transformer keeps one line per line, so line numbers are the cell's own.
    """
    text: str = TransformerManager().transform_cell(source)  # type: ignore[no-untyped-call]
    return text


def parse_cell(source: str) -> ast.Module:
    """The AST of :func:`python_source`; :class:`SyntaxError` for a cell that is not Python."""
    return ast.parse(python_source(source))


def _top_level(body: list[ast.stmt]) -> list[ast.stmt]:
    """Module-level statements, including those inside top-level ``if``/``try``/``with``."""
    out: list[ast.stmt] = []
    for stmt in body:
        out.append(stmt)
        if isinstance(stmt, ast.If):
            out += _top_level(stmt.body) + _top_level(stmt.orelse)
        elif isinstance(stmt, ast.Try):
            out += _top_level(stmt.body) + _top_level(stmt.orelse) + _top_level(stmt.finalbody)
            for handler in stmt.handlers:
                out += _top_level(handler.body)
        elif isinstance(stmt, ast.With):
            out += _top_level(stmt.body)
    return out


def target_names(target: ast.AST) -> list[str]:
    """Names bound by an assignment target (``a``, ``a, (b, *c)``); not attributes or items."""
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, ast.Tuple | ast.List):
        return [name for element in target.elts for name in target_names(element)]
    if isinstance(target, ast.Starred):
        return target_names(target.value)
    return []


def defined_names(source: str) -> list[str]:
    """Names a solution cell defines at module level: functions, classes, variables, imports.

    Unparsable cells define nothing (the static check reports them).
    """
    try:
        tree = parse_cell(source)
    except SyntaxError:
        return []
    names: list[str] = []
    for stmt in _top_level(tree.body):
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.append(stmt.name)
        elif isinstance(stmt, ast.Assign):
            names += [n for target in stmt.targets for n in target_names(target)]
        elif isinstance(stmt, ast.AnnAssign | ast.AugAssign):
            names += target_names(stmt.target)
    return list(dict.fromkeys(names))


def defined_classes(source: str) -> set[str]:
    """Names of the classes a solution cell defines at module level."""
    try:
        tree = parse_cell(source)
    except SyntaxError:
        return set()
    return {stmt.name for stmt in _top_level(tree.body) if isinstance(stmt, ast.ClassDef)}


def solution_names(cells: list[Cell]) -> dict[str, list[str]]:
    """The names each solution cell defines, by grade id (every solution cell has one)."""
    return {cell.grade_id: defined_names(cell.source) for cell in cells if cell.is_solution}


def assignment_notebooks(source_dir: Path) -> list[Path]:
    """The notebooks of an assignment folder that nbgrader grades (its top level), sorted."""
    return sorted(source_dir.glob("*.ipynb"))
