"""Tests run as written: submissions that hook the kernel instead of solving score nothing.

Real nbgrader, real sandbox, a demo assignment (algorithms-in-python/ps1-search-sort). Each
attack solves nothing; each scored more than zero before the runner restored the kernel
before test cells and the course's tests checked types.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import nbformat
import pytest

from grader.autograde import GradeResult, autograde_submissions
from tests.grader.conftest import REPO, VENV_BIN, make_course, short_policy

pytestmark = pytest.mark.docker

SOURCE = REPO / "courses" / "algorithms-in-python" / "source" / "ps1-search-sort"
ASSIGNMENT = SOURCE.name
NOTEBOOK = f"{ASSIGNMENT}.ipynb"
SOLUTIONS = ("p1-lower-bound", "p2-merge-sort", "p3-two-sum", "p4-top-k")

#: Every assert becomes `pass` before IPython compiles a cell.
INPUT_TRANSFORMER = """
def _no_asserts(lines):
    return [("pass\\n" if line.lstrip().startswith("assert") else line) for line in lines]

get_ipython().input_transformers_cleanup.append(_no_asserts)
"""
#: Every assert is dropped from the parsed cell.
AST_TRANSFORMER = """
import ast

class _NoAsserts(ast.NodeTransformer):
    def visit_Assert(self, node):
        return ast.Pass()

get_ipython().ast_transformers.append(_NoAsserts())
"""
#: Every error of a test cell is swallowed (no error output: nbgrader gives full marks).
SWALLOW = """
import sys
get_ipython().set_custom_exc((BaseException,), lambda *args, **kwargs: None)
get_ipython().showtraceback = lambda *args, **kwargs: None
sys.excepthook = lambda *args: None
"""
#: Answers that compare equal to anything.
ALWAYS_EQUAL = """
class AlwaysEqual:
    def __eq__(self, other):
        return True

    def __ne__(self, other):
        return False

    __hash__ = object.__hash__

    def __iter__(self):
        return iter(())


def first_at_least(*args, **kwargs):
    return AlwaysEqual()


merge_sort = two_sum = top_k_words = first_at_least
"""
#: AlwaysEqual, plus builtins that make type checks agree.
PATCHED_BUILTINS = (
    ALWAYS_EQUAL
    + """
import builtins
_real_isinstance = builtins.isinstance
builtins.isinstance = lambda obj, cls: type(obj) is AlwaysEqual or _real_isinstance(obj, cls)
"""
)


def _first_cell(code: str) -> Callable[[nbformat.NotebookNode], None]:
    def edit(nb: nbformat.NotebookNode) -> None:
        nb.cells.insert(0, nbformat.v4.new_code_cell(code))

    return edit


def _solutions(code: str) -> Callable[[nbformat.NotebookNode], None]:
    def edit(nb: nbformat.NotebookNode) -> None:
        for cell in nb.cells:
            if cell.metadata.get("nbgrader", {}).get("grade_id") == SOLUTIONS[0]:
                cell.source = code
            elif cell.metadata.get("nbgrader", {}).get("grade_id") in SOLUTIONS:
                cell.source = "pass"

    return edit


ATTACKS = {
    "input-transformers": _first_cell(INPUT_TRANSFORMER),
    "ast-transformers": _first_cell(AST_TRANSFORMER),
    "swallow-errors": _first_cell(SWALLOW),
    "always-equal": _solutions(ALWAYS_EQUAL),
    "patched-builtins": _solutions(PATCHED_BUILTINS),
}


@pytest.fixture(scope="module")
def graded(
    sandbox_engine: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, GradeResult]]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PATH", VENV_BIN + os.pathsep + os.environ.get("PATH", ""))
        root = make_course(tmp_path_factory.mktemp("as-written") / "course", SOURCE)
        release = root / "release" / ASSIGNMENT / NOTEBOOK
        students = {"reference": (SOURCE / NOTEBOOK, None), "untouched": (release, None)}
        students.update({name: (release, edit) for name, edit in ATTACKS.items()})
        for student, (base, edit) in students.items():
            nb = nbformat.read(base, as_version=4)
            if edit is not None:
                edit(nb)
            dest = root / "submitted" / student / ASSIGNMENT / NOTEBOOK
            dest.parent.mkdir(parents=True)
            nbformat.write(nb, dest)
        results = autograde_submissions(
            root, ASSIGNMENT, list(students), policy=short_policy(), parallel=2
        )
    yield {r.student: r for r in results}


def test_reference_keeps_full_marks(graded: dict[str, GradeResult]) -> None:
    result = graded["reference"]
    assert (result.score, result.max_score, result.outcome) == (10, 10, "ok"), result


@pytest.mark.parametrize("student", ["untouched", *ATTACKS])
def test_attack_scores_nothing(graded: dict[str, GradeResult], student: str) -> None:
    result = graded[student]
    assert result.max_score == 10 and result.outcome == "ok", result
    assert result.score == 0, result
