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

from hub.course_scaffold import nbgrader_meta, new_cell, new_notebook

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


def notebook(*, wrong: bool = True) -> nbformat.NotebookNode:
    """The source notebook (``wrong``: with the test cell the reference fails), built as
    ``learnhub courses new`` builds its assignment (hub/course_scaffold.py)."""
    cells = [
        new_cell("markdown", "Write `double(x)`.", "intro"),
        new_cell("code", SOLUTION, "double", **nbgrader_meta("double", solution=True)),
        new_cell("code", WEAK, "weak-tests", **nbgrader_meta("weak-tests", points=1)),
        new_cell("code", TYPED, "typed-tests", **nbgrader_meta("typed-tests", points=1)),
    ]
    if wrong:
        wrong_tests = nbgrader_meta("wrong-tests", points=1)
        cells.append(new_cell("code", WRONG, "wrong-tests", **wrong_tests))
    return new_notebook(cells)


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
