"""A small course whose assignment has a deliberately weak test cell, for `courses validate`.

Assignment ``ps1`` has one solution cell (``double``) and three test cells of one point each:

- ``weak-tests`` compares with ``==`` only: an "always equal" object passes it;
- ``typed-tests`` checks the type first: nothing but a real ``int`` passes it;
- ``wrong-tests`` expects a wrong value: even the reference solution fails it.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import yaml

COURSE_ID = "weak-tests"
ASSIGNMENT = "ps1"
NOTEBOOK = "ps1.ipynb"

SOLUTION = """\
def double(x):
    ### BEGIN SOLUTION
    return 2 * x
    ### END SOLUTION
"""
WEAK = "assert double(2) == 4\nassert double(5) == 10\n"
TYPED = "result = double(2)\nassert type(result) is int, 'return an int'\nassert result == 4\n"
WRONG = "assert type(double(3)) is int and double(3) == 7\n"


def _meta(grade_id: str, *, solution: bool = False, points: int = 0) -> dict[str, object]:
    meta: dict[str, object] = {
        "grade": points > 0,
        "grade_id": grade_id,
        "locked": not solution,
        "schema_version": 3,
        "solution": solution,
        "task": False,
    }
    if points:
        meta["points"] = points
    return {"nbgrader": meta}


def notebook(*, wrong: bool = True) -> nbformat.NotebookNode:
    """The source notebook (``wrong``: with the test cell the reference fails)."""
    new_code = nbformat.v4.new_code_cell
    cells = [
        nbformat.v4.new_markdown_cell("Write `double(x)`."),
        new_code(SOLUTION, metadata=_meta("double", solution=True)),
        new_code(WEAK, metadata=_meta("weak-tests", points=1)),
        new_code(TYPED, metadata=_meta("typed-tests", points=1)),
    ]
    if wrong:
        cells.append(new_code(WRONG, metadata=_meta("wrong-tests", points=1)))
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    return nb


def make_weak_course(courses_dir: Path, *, wrong: bool = True) -> Path:
    """Write the course folder under ``courses_dir``; returns it."""
    folder = courses_dir / COURSE_ID
    (folder / "source" / ASSIGNMENT).mkdir(parents=True)
    (folder / "course.yaml").write_text(
        yaml.safe_dump(
            {
                "id": COURSE_ID,
                "title": "Weak tests",
                "summary": "An assignment whose tests a cheater passes.",
                "price": {"amount": 100, "currency": "usd"},
                "assignments": [{"id": ASSIGNMENT, "title": "Problem set 1"}],
            }
        )
    )
    nbformat.write(notebook(wrong=wrong), folder / "source" / ASSIGNMENT / NOTEBOOK)
    return folder


def cell_ids(folder: Path) -> dict[str, str]:
    """nbformat cell id of each nbgrader cell, by grade id."""
    nb = nbformat.read(folder / "source" / ASSIGNMENT / NOTEBOOK, as_version=4)
    return {c.metadata["nbgrader"]["grade_id"]: c.id for c in nb.cells if "nbgrader" in c.metadata}
