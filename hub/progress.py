"""A learner's progress in a course: what they submitted and how it was graded.

Read from LearnHub's own database (exchange submissions and grade summaries), so the member
home can show it on every request without touching nbgrader gradebooks.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from hub.courses import Course
from hub.store import Database, ExchangeSubmission
from hub.store.usage_models import GradeSummary


def store_grades(db: Database, course_id: str, results: Iterable[Any]) -> None:
    """Copy autograde results (objects with student, assignment, score, max_score) (blocking)."""
    now = datetime.now(UTC)
    with db.transaction() as session:
        for result in results:
            if result.score is None:
                continue
            row = session.scalars(
                sa.select(GradeSummary).where(
                    GradeSummary.course_id == course_id,
                    GradeSummary.assignment_id == result.assignment,
                    GradeSummary.student == result.student,
                )
            ).first()
            if row is None:
                row = GradeSummary(
                    course_id=course_id, assignment_id=result.assignment, student=result.student
                )
                session.add(row)
            row.score = float(result.score)
            row.max_score = float(result.max_score or 0)
            row.graded_at = now


def course_progress(db: Database, course: Course, student: str) -> list[dict[str, Any]]:
    """One entry per assignment: submissions so far and the latest score, if graded."""
    with db.transaction() as session:
        counts = dict(
            session.execute(
                sa.select(ExchangeSubmission.assignment_id, sa.func.count())
                .where(
                    ExchangeSubmission.course_id == course.id,
                    ExchangeSubmission.student == student,
                )
                .group_by(ExchangeSubmission.assignment_id)
            ).all()
        )
        grades = {
            g.assignment_id: g
            for g in session.scalars(
                sa.select(GradeSummary).where(
                    GradeSummary.course_id == course.id, GradeSummary.student == student
                )
            )
        }
    progress = []
    for assignment in course.assignments:
        grade = grades.get(assignment.id)
        progress.append(
            {
                "id": assignment.id,
                "title": assignment.title,
                "submissions": int(counts.get(assignment.id, 0)),
                "score": f"{grade.score:g} / {grade.max_score:g}" if grade else "",
            }
        )
    return progress
