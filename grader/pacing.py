"""Each learner's deadline in the gradebook, through nbgrader's extensions (see hub/pacing.py).

Before every grading command :func:`apply_deadlines` stores each assignment's due date and, in
a self-paced course, each learner's extension: their enrolment (from LearnHub's database) minus
:data:`hub.pacing.SELF_PACED_ANCHOR`, plus the hours an instructor granted with
``learnhub grader extend``. nbgrader's late-penalty step (grader/late.py) then measures lateness
from that learner's own deadline. A cohort course keeps one date for everyone; its extensions
are only the granted ones, written when granted.

The granted hours are kept in the host's record ``extensions.json`` (grader/records.py): in a
self-paced course the gradebook's extension is a sum, and the granted part must survive a
recomputation of the enrolment part.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from pathlib import Path

from nbgrader.api import Gradebook, MissingEntry

from grader.records import read_record, write_record
from hub.courses import CourseEntry
from hub.pacing import gradebook_due, pacing_extension

log = logging.getLogger("learnhub.grader")

#: ``assignment/student -> hours`` granted with ``learnhub grader extend``.
EXTENSIONS_RECORD = "extensions.json"


def granted_hours(root: Path, assignment: str, student: str) -> float:
    """The extra hours granted to ``student`` for ``assignment`` (0 when none)."""
    try:
        return float(read_record(root, EXTENSIONS_RECORD).get(f"{assignment}/{student}", 0))
    except ValueError:
        return 0.0


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


def apply_deadlines(
    gb: Gradebook,
    entry: CourseEntry,
    root: Path,
    *,
    enrolments: Mapping[str, datetime],
    submitted: Mapping[str, Iterable[str]],
    now: datetime,
) -> None:
    """Store every assignment's due date and, in a self-paced course, every learner's
    extension: for the learners with a submission in the gradebook, in ``submitted``
    (``assignment -> students`` collected and not yet graded) or with granted hours.

    A self-paced learner with no enrolment on record (an instructor trying the assignment,
    access since withdrawn) counts as enrolled ``now``: nothing they handed in is late.
    """
    course = entry.course
    granted = read_record(root, EXTENSIONS_RECORD)
    for item in course.assignments:
        gb.update_or_create_assignment(item.id, duedate=gradebook_due(course, item))
        if course.pacing != "self-paced" or item.due_after is None:
            continue
        extended = {key.split("/", 1)[1] for key in granted if key.startswith(f"{item.id}/")}
        students = _students(gb, item.id) | set(submitted.get(item.id, ())) | extended
        for student in sorted(students):
            enrolled = enrolments.get(student)
            if enrolled is None:
                log.warning(
                    "no enrolment on record: deadline counted from now",
                    extra={"course": course.id, "assignment": item.id, "user": student},
                )
                enrolled = now
            extension = pacing_extension(course, enrolled) + timedelta(
                hours=granted_hours(root, item.id, student)
            )
            gb.update_or_create_student(student)
            gb.update_or_create_submission(item.id, student, extension=extension)
