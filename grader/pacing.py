"""Each learner's deadline in the gradebook, through nbgrader's extensions (see hub/pacing.py).

Before every grading command :func:`apply_deadlines` stores each assignment's due date and each
learner's extension: the hours an instructor granted with ``learnhub grader extend``, plus in a
self-paced course their enrolment (from LearnHub's database) minus
:data:`hub.pacing.SELF_PACED_ANCHOR`. nbgrader's late-penalty step (grader/late.py) then
measures lateness from that learner's own deadline. A cohort course keeps one date for everyone.

The granted hours are kept in the host's record ``extensions.json`` (grader/records.py): the
gradebook's extension is a sum, and the granted part must survive a recomputation of the
enrolment part (and a change of pacing).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from pathlib import Path

from nbgrader.api import Gradebook, MissingEntry

from grader.records import RECORDS_DIR, read_record, write_record
from hub.courses import CourseEntry
from hub.pacing import gradebook_due, pacing_extension

log = logging.getLogger("learnhub.grader")

#: ``assignment/student -> hours`` granted with ``learnhub grader extend``.
EXTENSIONS_RECORD = "extensions.json"


def record_granted_hours(root: Path, assignment: str, student: str, hours: float) -> None:
    """Remember (0: forget) the extra hours granted to ``student`` for ``assignment``."""
    record = read_record(root, EXTENSIONS_RECORD)
    key = f"{assignment}/{student}"
    if hours:
        record[key] = repr(float(hours))
    else:
        record.pop(key, None)
    write_record(root, EXTENSIONS_RECORD, record)


def _students(gb: Gradebook, assignment: str) -> set[str]:
    try:
        return {s.student.id for s in gb.find_assignment(assignment).submissions}
    except MissingEntry:
        return set()


def _granted(gb: Gradebook, entry: CourseEntry, root: Path) -> dict[str, str]:
    """The record of granted hours; made on first use from the gradebook's extensions (a
    cohort course of an earlier LearnHub kept them only there)."""
    if (root / RECORDS_DIR / EXTENSIONS_RECORD).exists():
        return read_record(root, EXTENSIONS_RECORD)
    record: dict[str, str] = {}
    if entry.course.pacing == "cohort":
        for item in entry.course.assignments:
            try:
                submissions = gb.find_assignment(item.id).submissions
            except MissingEntry:
                continue
            for sub in submissions:
                if sub.extension:
                    hours = sub.extension.total_seconds() / 3600
                    record[f"{item.id}/{sub.student.id}"] = repr(hours)
    write_record(root, EXTENSIONS_RECORD, record)
    return record


def apply_deadlines(
    gb: Gradebook,
    entry: CourseEntry,
    root: Path,
    *,
    enrolments: Mapping[str, datetime],
    submitted: Mapping[str, Iterable[str]],
    now: datetime,
) -> None:
    """Store every assignment's due date, and every learner's extension: the granted hours,
    plus in a self-paced course their enrolment minus the anchor. For the learners with a
    submission in the gradebook or granted hours, and (self-paced) those in ``submitted``
    (``assignment -> students`` collected and not yet graded).

    Computing every extension afresh keeps a change of pacing right both ways. A self-paced
    learner with no enrolment on record (an instructor trying the assignment, access since
    withdrawn) counts as enrolled ``now``: nothing they handed in is late.
    """
    course = entry.course
    granted = _granted(gb, entry, root)
    for item in course.assignments:
        gb.update_or_create_assignment(item.id, duedate=gradebook_due(course, item))
        paced = course.pacing == "self-paced" and item.due_after is not None
        extended = {key.split("/", 1)[1] for key in granted if key.startswith(f"{item.id}/")}
        students = _students(gb, item.id) | extended
        if paced:
            students |= set(submitted.get(item.id, ()))
        for student in sorted(students):
            extension = timedelta(hours=_hours(granted.get(f"{item.id}/{student}", "0")))
            if paced:
                enrolled = enrolments.get(student)
                if enrolled is None:
                    log.warning(
                        "no enrolment on record: deadline counted from now",
                        extra={"course": course.id, "assignment": item.id, "user": student},
                    )
                    enrolled = now
                extension += pacing_extension(course, enrolled)
            gb.update_or_create_student(student)
            gb.update_or_create_submission(item.id, student, extension=extension or None)


def _hours(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return 0.0
