"""The runner's pure helpers: which cells are tests, which names an instructor cell binds."""

from __future__ import annotations

from nbformat.v4 import new_code_cell, new_markdown_cell

from learnhub_container.sandbox_runner import bound_names, is_instructor_cell, is_test_cell


def _meta(**flags: bool) -> dict[str, object]:
    return {"nbgrader": {"grade_id": "x", "schema_version": 3, **flags}}


def test_test_and_instructor_cells() -> None:
    test = new_code_cell("assert f() == 1", metadata=_meta(grade=True, solution=False))
    answer = new_code_cell("def f(): ...", metadata=_meta(grade=False, solution=True))
    helpers = new_code_cell("import random", metadata=_meta(locked=True, grade=False))
    manual = new_markdown_cell("why?", metadata=_meta(grade=True, solution=True))
    plain = new_code_cell("x = 1")
    assert [is_test_cell(c) for c in (test, answer, helpers, manual, plain)] == [
        True,
        False,
        False,
        False,
        False,
    ]
    assert [is_instructor_cell(c) for c in (test, answer, helpers, manual, plain)] == [
        False,
        False,
        True,
        False,
        False,
    ]


def test_bound_names() -> None:
    source = (
        "import os.path, random as rnd\n"
        "from collections import Counter, deque as dq\n"
        "from math import *\n"
        "def helper(): pass\n"
        "class Thing: pass\n"
        "a, (b, c) = 1, (2, 3)\n"
        "d: int = 4\n"
        "if True:\n"
        "    nested = 5\n"
    )
    assert bound_names(source) == [
        "os",
        "rnd",
        "Counter",
        "dq",
        "helper",
        "Thing",
        "a",
        "b",
        "c",
        "d",
    ]
    assert bound_names("def broken(:") == []
