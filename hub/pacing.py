"""Pacing: whose deadline is when.

A course's `course.yaml` says ``pacing: cohort`` (every learner has the dates of
``assignments[].due``) or ``pacing: self-paced`` (each learner's deadline is their enrolment
plus ``assignments[].due_after``). The enrolment is when the learner's access to the course was
recorded: the purchase, the operator's grant, the subscription whose plan covers the course,
whichever came first of those that still give access.

nbgrader knows one due date per assignment and an extension per learner's submission
(``SubmittedAssignment.duedate = assignment.duedate + extension``), and computes lateness and the
late penalty from that. A self-paced assignment is therefore stored in the gradebook as due
:data:`SELF_PACED_ANCHOR` plus ``due_after``, and each learner's extension is their enrolment
minus the anchor (plus any extension an instructor granted): nbgrader's own arithmetic then
gives every learner their own deadline (grader/pacing.py writes it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from hub.access.status import ACCESS_STATUSES
from hub.courses import Assignment, Catalog, Course, CourseEntry
from hub.entitlements import entitled_courses
from hub.settings import PlanSettings

#: The gradebook's due date of a self-paced assignment is this plus ``due_after``; a learner's
#: extension is their enrolment minus this. Any fixed instant before every enrolment works;
#: this one is easy to recognise in the formgrader.
SELF_PACED_ANCHOR = datetime(2000, 1, 1, tzinfo=UTC)


def gradebook_due(course: Course, assignment: Assignment) -> datetime | None:
    """The due date nbgrader stores for the assignment (see the module docstring)."""
    if course.pacing == "self-paced":
        if assignment.due_after is None:
            return None
        return SELF_PACED_ANCHOR + assignment.due_after
    return assignment.due


def pacing_extension(course: Course, enrolled_at: datetime) -> timedelta:
    """The extension that turns a self-paced course's gradebook due dates into this learner's
    (zero for a cohort course)."""
    if course.pacing != "self-paced":
        return timedelta(0)
    return max(timedelta(0), enrolled_at - SELF_PACED_ANCHOR)


def learner_deadline(
    course: Course, assignment: Assignment, enrolled_at: datetime | None
) -> datetime | None:
    """When ``assignment`` is due for a learner who enrolled at ``enrolled_at`` (None: unknown
    enrolment of a self-paced course, or no deadline)."""
    if course.pacing == "cohort":
        return assignment.due
    if assignment.due_after is None or enrolled_at is None:
        return None
    return enrolled_at + assignment.due_after


@dataclass(frozen=True)
class DeadlinePreview:
    """What a buyer is told about an assignment's deadline before paying."""

    title: str
    #: Cohort: the date. Self-paced: None (see ``after``).
    due: datetime | None
    #: Self-paced: how long after enrolment it is due.
    after: timedelta | None
    #: Cohort: the date is already past (a buyer today is late from the start).
    passed: bool


def deadline_previews(course: Course, now: datetime) -> list[DeadlinePreview]:
    """Each assignment's deadline as a buyer at ``now`` would get it."""
    return [
        DeadlinePreview(
            title=a.title,
            due=a.due if course.pacing == "cohort" else None,
            after=a.due_after if course.pacing == "self-paced" else None,
            passed=course.pacing == "cohort" and a.due is not None and a.due <= now,
        )
        for a in course.assignments
    ]


def enrolment_times(
    session: Session,
    entry: CourseEntry,
    plans: Sequence[PlanSettings],
    *,
    username: str | None = None,
) -> dict[str, datetime]:
    """``username -> enrolled at`` for everyone (or ``username``) whose access to the course
    is current: the earliest record (purchase, grant, subscription to a plan covering it) still
    giving access."""
    # Imported here: hub.store pulls in the ORM models, which the pages' importers need not.
    from hub.store import Entitlement

    catalog = Catalog([entry])
    course_id = entry.course.id
    query = (
        sa.select(Entitlement)
        .where(Entitlement.status.in_(sorted(ACCESS_STATUSES)))
        .where(sa.or_(Entitlement.course_id == course_id, Entitlement.plan_id.is_not(None)))
    )
    if username is not None:
        query = query.where(Entitlement.username == username)
    rows = session.scalars(query)
    out: dict[str, datetime] = {}
    for row in rows:
        if course_id not in entitled_courses(row, catalog, plans):
            continue
        known = out.get(row.username)
        if known is None or row.created_at < known:
            out[row.username] = row.created_at
    return out
