"""Dynamic check: grade the reference, the release and a cheater in the real sandbox.

For one assignment, in a throwaway nbgrader course directory, the way learners' work is graded
(:func:`grader.autograde.autograde_submissions`: nbgrader's autograde, student code in the
sandbox, hidden tests restored) grades three submissions:

- ``reference``: the source notebooks, solutions in. Every test cell must give full marks.
- ``release``: the notebooks as ``generate_assignment`` makes them for learners (solutions
  stripped). It must not score full marks; a test cell it passes gives points for nothing.
- ``cheater``: the release with every solution cell replaced by one that binds each name the
  reference's cell defines (functions, classes, variables) to an object that says yes to every
  comparison, returns itself from every call, attribute, item and operator, and is always true.
  No test cell may give it a point: each one that does is reported.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
from nbformat import NotebookNode
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.converters import GenerateAssignment
from nbgrader.coursedir import CourseDirectory
from nbgrader.utils import capture_log

from grader.autograde import GradeResult, autograde_submissions, course_config
from grader.checks.cells import (
    assignment_notebooks,
    code_cells,
    nbgrader_meta,
    read_notebook,
    solution_names,
)
from grader.checks.findings import Finding, Level
from grader.gradebook import ensure_gradebook
from grader.sandbox import SandboxPolicy
from hub.courses import CourseEntry

#: The submissions graded for each assignment (nbgrader student ids).
REFERENCE, RELEASE, CHEATER = "reference", "release", "cheater"
SUBMISSIONS = (REFERENCE, RELEASE, CHEATER)

#: Defines the always-equal class; each solution name is then bound to an instance.
CHEATER_PRELUDE = '''\
class _AlwaysEqual:
    """Says yes to every comparison and returns itself from everything else."""

    def __eq__(self, other):
        return True

    def __ne__(self, other):
        return False

    __lt__ = __le__ = __gt__ = __ge__ = __contains__ = __eq__

    def __hash__(self):
        return 0

    def __bool__(self):
        return True

    def __call__(self, *args, **kwargs):
        return self

    def __getattr__(self, name):
        # IPython's display protocol (_repr_html_, _ipython_display_, ...) must not see a
        # method; every other attribute, dunders included (f.__name__), is the object itself.
        if name.startswith("_") and not name.startswith("__"):
            raise AttributeError(name)
        return self

    def __getitem__(self, key):
        return self

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __getitem__
    __truediv__ = __rtruediv__ = __floordiv__ = __rfloordiv__ = __mod__ = __pow__ = __getitem__
    __and__ = __or__ = __xor__ = __getitem__

    def __neg__(self):
        return self

    __pos__ = __abs__ = __invert__ = __neg__

    def __iter__(self):
        return iter(())

    def __len__(self):
        return 0

    def __repr__(self):
        return "AlwaysEqual()"
'''


def cheater_source(names: list[str]) -> str:
    """A solution cell that binds every name in ``names`` to an always-equal object."""
    lines = [CHEATER_PRELUDE, *(f"{name} = _AlwaysEqual()" for name in names)]
    return "\n".join(lines) + "\n"


def cheater_notebook(release: NotebookNode, names: dict[str, list[str]]) -> NotebookNode:
    """``release`` with each solution code cell replaced by :func:`cheater_source` of the names
    its reference cell (same grade id) defines."""
    nb: NotebookNode = nbformat.from_dict(release)  # type: ignore[no-untyped-call]
    for cell in nb.cells:
        meta = nbgrader_meta(cell)
        if cell.cell_type == "code" and meta.get("solution"):
            cell.source = cheater_source(names.get(str(meta.get("grade_id", "")), []))
    return nb


@dataclass(frozen=True)
class CellScore:
    """What one submission scored on one test cell."""

    notebook: str
    grade_id: str
    score: float
    max_score: float


@dataclass
class _Assignment:
    """One assignment's throwaway nbgrader course directory and what is known about it."""

    entry: CourseEntry
    assignment: str
    root: Path

    @property
    def course(self) -> str:
        """The course id."""
        return self.entry.course.id

    def finding(self, level: Level, check: str, message: str, **where: Any) -> Finding:
        """A finding about this assignment (``where``: notebook, cell id, grade id)."""
        return Finding(level, check, self.course, self.assignment, message, **where)

    def submit(self, student: str, notebook: str, nb: NotebookNode) -> None:
        """Put ``nb`` where nbgrader collects ``student``'s submission."""
        dest = self.root / "submitted" / student / self.assignment / notebook
        dest.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, dest)  # type: ignore[no-untyped-call]

    def test_cells(self) -> dict[tuple[str, str], str]:
        """``(notebook id, grade id) -> cell id`` of every test cell of the source notebooks."""
        out = {}
        for path in assignment_notebooks(self.root / "source" / self.assignment):
            for cell in code_cells(read_notebook(path)):
                if cell.is_test:
                    out[(path.stem, cell.grade_id)] = cell.cell_id
        return out

    def scores(self, student: str, tests: dict[tuple[str, str], str]) -> list[CellScore]:
        """The student's score on every test cell, from the gradebook."""
        out = []
        with Gradebook(self.db_url, self.course) as gb:
            try:
                submission = gb.find_submission(self.assignment, student)
            except MissingEntry:
                return []
            for notebook in submission.notebooks:
                for grade in notebook.grades:
                    info = grade.to_dict()
                    if (notebook.name, info["name"]) in tests:
                        out.append(
                            CellScore(
                                notebook.name,
                                info["name"],
                                float(info["auto_score"] or 0),
                                float(info["max_score"] or 0),
                            )
                        )
        return out

    @property
    def db_url(self) -> str:
        """The throwaway gradebook (SQLite, in the course directory)."""
        return f"sqlite:///{self.root / 'gradebook.db'}"

    def error_of(self, student: str, score: CellScore) -> str:
        """``ename: evalue`` of the test cell's error in the graded notebook, if it has one."""
        path = self.root / "autograded" / student / self.assignment / f"{score.notebook}.ipynb"
        if not path.is_file():
            return ""
        for cell in read_notebook(path).cells:
            if nbgrader_meta(cell).get("grade_id") != score.grade_id:
                continue
            for output in cell.get("outputs", []):
                if output.get("output_type") == "error":
                    text = f"{output.get('ename', '')}: {output.get('evalue', '')}".strip(": ")
                    return " ".join(text.split())[:200]
        return ""


def _generate_release(work: _Assignment) -> str:
    """Run nbgrader's ``generate_assignment``; returns its error text, empty on success."""
    config = course_config(work.root, course_id=work.course, db_url=work.db_url)
    coursedir = CourseDirectory(config=config)
    coursedir.assignment_id = work.assignment
    app = GenerateAssignment(coursedir=coursedir, config=config)
    app.force = True
    app.create_assignment = True
    result = capture_log(app)
    if result.get("success"):
        return ""
    detail = (result.get("error") or result.get("log") or "").strip().splitlines()[-6:]
    return " / ".join(line.strip() for line in detail)


def _outcome_findings(work: _Assignment, result: GradeResult) -> list[Finding]:
    if result.outcome == "error":
        return [
            work.finding(
                "error",
                "sandbox",
                f"could not grade the {result.student} submission ({result.reason}): "
                f"{result.detail}",
            )
        ]
    if result.outcome == "limit" and result.student == REFERENCE:
        return [
            work.finding(
                "error",
                "reference-fails",
                f"the reference solution hit a sandbox limit ({result.reason}): {result.detail}; "
                "raise the course's grading.sandbox limits or make the tests lighter",
            )
        ]
    return []


def _judge(
    work: _Assignment, tests: dict[tuple[str, str], str], results: dict[str, GradeResult]
) -> list[Finding]:
    findings: list[Finding] = []
    for result in results.values():
        findings += _outcome_findings(work, result)
    if any(f.check == "sandbox" for f in findings):
        return findings

    def where(score: CellScore) -> dict[str, Any]:
        return {
            "notebook": f"{score.notebook}.ipynb",
            "cell_id": tests[(score.notebook, score.grade_id)],
            "grade_id": score.grade_id,
        }

    for score in work.scores(REFERENCE, tests) if REFERENCE in results else []:
        if score.score < score.max_score:
            error = work.error_of(REFERENCE, score)
            findings.append(
                work.finding(
                    "error",
                    "reference-fails",
                    f"the reference solution scores {score.score:g}/{score.max_score:g} here"
                    + (f" ({error})" if error else "")
                    + "; learners who solve it correctly would lose these points",
                    **where(score),
                )
            )
    release = work.scores(RELEASE, tests) if RELEASE in results else []
    got, most = sum(s.score for s in release), sum(s.max_score for s in release)
    if most > 0 and got >= most:
        findings.append(
            work.finding(
                "error",
                "release-full-marks",
                f"the release, as learners receive it (solutions stripped), scores full marks "
                f"({got:g}/{most:g}): the tests do not test the solution",
            )
        )
    else:
        # An error, not a warning: the blank release must score zero, or a learner gets
        # points for handing in the assignment untouched.
        for score in release:
            if score.score > 0:
                findings.append(
                    work.finding(
                        "error",
                        "release-scores",
                        f"the release, as learners receive it (solutions stripped), already "
                        f"scores {score.score:g}/{score.max_score:g} here: points for doing "
                        "nothing; make this cell test the learner's answer",
                        **where(score),
                    )
                )
    for score in work.scores(CHEATER, tests) if CHEATER in results else []:
        if score.score > 0:
            findings.append(
                work.finding(
                    "error",
                    "cheater-passes",
                    f"a cheater scores {score.score:g}/{score.max_score:g} here by defining the "
                    "solution's names as an object whose `__eq__` always says yes: check "
                    "types before values (see `learnhub courses validate` warnings for this "
                    "cell, and docs/how-to/tests-that-resist-cheating.md)",
                    **where(score),
                )
            )
    return findings


def _check_one(
    work: _Assignment, policy: SandboxPolicy, parallel: int, submissions: tuple[str, ...]
) -> list[Finding]:
    assignment = work.assignment
    shutil.copytree(
        work.entry.source_dir / assignment,
        work.root / "source" / assignment,
        ignore=shutil.ignore_patterns(".ipynb_checkpoints"),
    )
    # In-process (grader/gradebook.py): nbgrader's own way runs `alembic` from PATH, 20 to 30 s
    # on a busy host, and fails where the venv's bin/ is not on PATH.
    ensure_gradebook(work.db_url)
    error = _generate_release(work)
    if error:
        return [work.finding("error", "generate", f"generate_assignment failed: {error}")]
    for source in assignment_notebooks(work.root / "source" / assignment):
        reference = read_notebook(source)
        release = read_notebook(work.root / "release" / assignment / source.name)
        names = solution_names(code_cells(reference))
        versions = {
            REFERENCE: reference,
            RELEASE: release,
            CHEATER: cheater_notebook(release, names),
        }
        for student in submissions:
            work.submit(student, source.name, versions[student])
    results = autograde_submissions(
        work.root,
        assignment,
        list(submissions),
        policy=policy,
        config=course_config(work.root, course_id=work.course, db_url=work.db_url),
        parallel=parallel,
    )
    return _judge(work, work.test_cells(), {r.student: r for r in results})


def check_assignments(
    entry: CourseEntry,
    assignments: list[str],
    *,
    policy: SandboxPolicy,
    parallel: int = 3,
    workdir: Path | None = None,
    submissions: tuple[str, ...] = SUBMISSIONS,
    progress: Callable[[str], None] | None = None,
) -> list[Finding]:
    """Grade the reference, the release and the cheater of each assignment in the sandbox.

    ``submissions`` picks some of them (``("cheater",)`` when the others are known to grade as
    they should), for a quicker run. One throwaway nbgrader course directory (under
    ``workdir``, default a temporary folder; removed afterwards) and one gradebook serve all
    the assignments. ``progress`` is called with ``course/assignment`` before each assignment
    is graded.

    Needs the Docker engine and the course's image (as grading does).
    """
    findings: list[Finding] = []
    with tempfile.TemporaryDirectory(prefix="learnhub-validate-", dir=workdir) as tmp:
        root = Path(tmp) / entry.course.id
        for assignment in assignments:
            if progress is not None:
                progress(f"{entry.course.id}/{assignment}")
            work = _Assignment(entry, assignment, root)
            findings += _check_one(work, policy, parallel, submissions)
    return findings
