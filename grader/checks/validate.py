"""`learnhub courses validate`: every check of a course's assignments, in one report."""

from __future__ import annotations

from collections.abc import Callable

from grader.checks.cells import assignment_notebooks, code_cells, read_notebook
from grader.checks.findings import Finding
from grader.checks.static import check_notebook
from grader.sandbox import SandboxPolicy
from hub.courses import CourseEntry


def static_findings(entry: CourseEntry) -> list[Finding]:
    """The static check of every assignment of the course (nothing runs)."""
    course = entry.course.id
    findings: list[Finding] = []
    for assignment in entry.course.assignments:
        notebooks = assignment_notebooks(entry.source_dir / assignment.id)
        if not notebooks:
            findings.append(
                Finding(
                    "error",
                    "no-notebook",
                    course,
                    assignment.id,
                    f"source/{assignment.id}/ has no notebook: put the nbgrader source "
                    "notebook(s) of the assignment there",
                )
            )
        for path in notebooks:
            cells = code_cells(read_notebook(path))
            findings += check_notebook(course, assignment.id, path.name, cells)
    return findings


def validate_course(
    entry: CourseEntry,
    *,
    policy: SandboxPolicy | None = None,
    parallel: int = 3,
    progress: Callable[[str], None] | None = None,
) -> list[Finding]:
    """Static findings of the course, then (with a sandbox ``policy``) the dynamic ones.

    The dynamic check grades three submissions per assignment in the sandbox (tens of seconds
    per assignment: the reference runs the hidden tests), so it runs only when asked for.
    """
    findings = static_findings(entry)
    if policy is None:
        return findings
    from grader.checks.dynamic import check_assignments

    runnable = [
        a.id for a in entry.course.assignments if assignment_notebooks(entry.source_dir / a.id)
    ]
    return findings + check_assignments(
        entry, runnable, policy=policy, parallel=parallel, progress=progress
    )
