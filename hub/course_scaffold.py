"""`learnhub courses new ID`: a new course folder that validates, to edit from there.

The folder has what every course has (hub/courses.py): a commented `course.yaml`, one lesson
notebook in `materials/`, and one nbgrader assignment in `source/ps1/` in the shape of the demo
courses: a locked introduction, a solution cell (``### BEGIN SOLUTION``), a visible test cell
and a hidden test cell (``### BEGIN HIDDEN TESTS``), one point each. Its tests check types
before values, so `learnhub courses validate ID --run` passes from the start: the reference
scores full marks, the release and a cheater nothing.

The folder is written under a hidden name (the catalog skips dot folders) and renamed into
place, so an interrupted run never leaves a half course for the catalog to refuse.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import nbformat

from hub.courses import COURSE_ID_PATTERN, load_course
from hub.errors import CourseError

#: The assignment the scaffold writes.
ASSIGNMENT = "ps1"

COURSE_YAML = """\
# {course_id}: written by `learnhub courses new`. Reference: docs/reference/course-yaml.md
id: {course_id}
title: {title}
summary: One or two sentences for the catalog card. Say who the course is for.
description: |
  What learners will be able to do afterwards, and what they need to know before.
price:
  amount: 0          # minor units (cents); 0 = free with sign-up
  currency: usd
instructors: {instructors}
syllabus:
  - "Lesson 1: counting words"
outcomes:
  - "Write and test a small function"
# self-paced: each learner's deadlines count from their own enrolment (due_after).
# cohort: everyone has the same dates; give each assignment `due: 2027-03-01T23:59:00Z`.
pacing: self-paced
assignments:
  - id: {assignment}
    title: "Problem set 1: Counting words"
    due_after: 14d
grading:
  late_penalty_percent_per_day: 10   # per started day after the learner's deadline
  max_late_penalty_percent: 50
"""

LESSON_TEXT = """\
# Lesson 1: Counting words

A dictionary maps keys to values. Counting things is the classic use: each new word gets the
count 1, each word seen before one more. Run the cell below, then change the sentence."""

LESSON_CODE = """\
counts = {}
for word in "the cat and the hat".split():
    counts[word] = counts.get(word, 0) + 1
counts"""

INTRO = """\
# Problem set 1: Counting words

Write `word_count(text)`: it returns a `dict` that maps each word of `text`, lowercased, to how
many times it appears. Words are separated by whitespace.

The visible test below shows the expected behaviour; a **hidden test** runs when your work is
graded. Replace `raise NotImplementedError()` with your code, then run *Validate*."""

SOLUTION = '''\
def word_count(text):
    """How many times each lowercased word of ``text`` appears."""
    ### BEGIN SOLUTION
    counts = {}
    for word in text.lower().split():
        counts[word] = counts.get(word, 0) + 1
    return counts
    ### END SOLUTION'''

#: Type first, then value: an answer that claims to equal everything fails (see
#: docs/how-to/tests-that-resist-cheating.md).
VISIBLE_TESTS = """\
result = word_count("the cat and the hat")
assert type(result) is dict, "word_count must return a dict"
assert result == {"the": 2, "cat": 1, "and": 1, "hat": 1}"""

HIDDEN_TESTS = """\
# Hidden tests: learners see this comment only; the tests run when their work is graded.
### BEGIN HIDDEN TESTS
mixed = word_count("Go go GO  stop")
assert type(mixed) is dict and mixed == {"go": 3, "stop": 1}
empty = word_count("")
assert type(empty) is dict and empty == {}
### END HIDDEN TESTS"""

KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def nbgrader_meta(grade_id: str, *, solution: bool = False, points: int = 0) -> dict[str, Any]:
    """Cell metadata as nbgrader's create-assignment toolbar writes it (schema 3): a solution
    cell (``solution``), a graded test cell (``points``) or a locked read-only cell."""
    meta: dict[str, Any] = {
        "grade": points > 0,
        "grade_id": grade_id,
        "locked": not solution,
        "schema_version": 3,
        "solution": solution,
        "task": False,
    }
    if points:
        meta["points"] = points
    out: dict[str, Any] = {"nbgrader": meta}
    if not solution:
        out.update(deletable=False, editable=False)
    return out


def new_notebook(cells: list[nbformat.NotebookNode]) -> nbformat.NotebookNode:
    """A notebook of ``cells`` with the Python kernel a course image runs."""
    nb: nbformat.NotebookNode = nbformat.v4.new_notebook(cells=cells)  # type: ignore[no-untyped-call]
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def new_cell(kind: str, source: str, cell_id: str, **metadata: Any) -> nbformat.NotebookNode:
    """A ``markdown`` or code cell with a stable ``cell_id`` and ``metadata``."""
    make = nbformat.v4.new_markdown_cell if kind == "markdown" else nbformat.v4.new_code_cell
    cell: nbformat.NotebookNode = make(source, metadata=metadata)  # type: ignore[no-untyped-call]
    cell.id = cell_id  # stable ids: validate's findings name them
    return cell


def lesson_notebook() -> nbformat.NotebookNode:
    """The first lesson (a learner-facing notebook of `materials/`)."""
    return new_notebook(
        [
            new_cell("markdown", LESSON_TEXT, "lesson-text"),
            new_cell("code", LESSON_CODE, "lesson-code"),
        ]
    )


def assignment_notebook() -> nbformat.NotebookNode:
    """The nbgrader source notebook of the assignment, solution and hidden tests in."""
    return new_notebook(
        [
            new_cell("markdown", INTRO, "intro", **nbgrader_meta("intro")),
            new_cell("code", SOLUTION, "word-count", **nbgrader_meta("word-count", solution=True)),
            new_cell("code", VISIBLE_TESTS, "tests", **nbgrader_meta("tests", points=1)),
            new_cell(
                "code", HIDDEN_TESTS, "hidden-tests", **nbgrader_meta("hidden-tests", points=1)
            ),
        ]
    )


def check_new_course_id(courses_dir: Path, course_id: str) -> Path:
    """The folder a new course ``course_id`` gets; :class:`CourseError` when the id is not a
    valid course id or the course exists."""
    if not re.fullmatch(COURSE_ID_PATTERN, course_id):
        raise CourseError(
            f"{course_id!r} is not a course id: it must start with a letter and be lowercase "
            "letters, digits and single dashes, at most 30 (it becomes a JupyterHub server "
            "name), e.g. intro-python"
        )
    folder = courses_dir / course_id
    if folder.exists():
        raise CourseError(
            f"{folder} exists already: choose another id, or edit that course's course.yaml"
        )
    return folder


def scaffold_course(
    courses_dir: Path, course_id: str, *, title: str = "", instructors: tuple[str, ...] = ()
) -> Path:
    """Write the new course ``course_id`` under ``courses_dir``; returns its folder.

    The result is loaded back with :func:`hub.courses.load_course` before it is put in place.
    """
    folder = check_new_course_id(courses_dir, course_id)
    if not courses_dir.is_dir():
        raise CourseError(f"{courses_dir}: courses folder not found (settings: courses_dir)")
    partial = courses_dir / f".{course_id}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    try:
        partial.mkdir()
        title = title.strip() or course_id.replace("-", " ").capitalize()
        listed = "[" + ", ".join(_yaml_string(name) for name in instructors) + "]"
        (partial / "course.yaml").write_text(
            COURSE_YAML.format(
                course_id=course_id,
                title=_yaml_string(title),
                instructors=listed,
                assignment=ASSIGNMENT,
            ),
            encoding="utf-8",
        )
        (partial / "materials").mkdir()
        nbformat.write(lesson_notebook(), partial / "materials" / "01-counting-words.ipynb")  # type: ignore[no-untyped-call]
        (partial / "source" / ASSIGNMENT).mkdir(parents=True)
        nbformat.write(  # type: ignore[no-untyped-call]
            assignment_notebook(), partial / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
        )
        partial.rename(folder)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    load_course(folder)  # what the catalog will do: a scaffold that does not load is a bug
    return folder


def _yaml_string(text: str) -> str:
    """``text`` as a double-quoted YAML scalar (JSON's escaping is YAML's)."""
    import json

    return json.dumps(text, ensure_ascii=False)
