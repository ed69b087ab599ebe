"""Notices: what happened that a member asked to hear about, queued in the outbox.

Each hook runs inside the transaction of the change it tells about (an answer saved, an
announcement posted), in a savepoint: a notice that cannot be queued is logged and never undoes
the change. Feedback is released outside LearnHub's database (nbgrader's exchange), so its
notice has an entry point of its own, :func:`feedback_released`, which every way of releasing
feedback goes through (``grader.course.GradingCourse.feedback``: the dashboard's job and
``learnhub grader feedback`` alike). Only members with a *verified* address who did not
opt out get a row; the sender checks the opt-out again when it sends, so turning a notice off
also stops what is already queued.

Who learns in a course (announcements, deadlines) comes from LearnHub's entitlements, with
plans resolved by the service's settings (:func:`configure_audience`, called at its start).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from hub.i18n.dates import iso
from hub.mail.members import recipient
from hub.mail.outbox import OPT_OUT_OF, enqueue
from hub.store import Database, Entitlement

log = logging.getLogger("learnhub.mail")

#: ``learners(session, course_id)``: who learns in a course now.
Audience = Callable[[Session, str], set[str]]


def _course_entitlements(session: Session, course_id: str) -> set[str]:
    """Learners with a live entitlement to the course itself (no plans)."""
    from hub.access.status import ACCESS_STATUSES

    rows = session.scalars(
        sa.select(Entitlement.username).where(
            Entitlement.course_id == course_id,
            Entitlement.status.in_([str(s) for s in ACCESS_STATUSES]),
        )
    )
    return set(rows)


_audience: list[Audience] = [_course_entitlements]


def configure_audience(learners: Audience) -> None:
    """Use ``learners`` to find a course's learners (the service passes one that knows plans)."""
    _audience[0] = learners


def learners_of(session: Session, course_id: str) -> set[str]:
    """Who learns in ``course_id`` now."""
    return _audience[0](session, course_id)


def _queue(
    session: Session,
    kind: str,
    usernames: Iterable[str],
    params: dict[str, Any],
    dedupe: str,
) -> int:
    """Queue ``kind`` for each member who wants it; the number queued. Never raises."""
    queued = 0
    opt = OPT_OUT_OF[kind]
    try:
        with session.begin_nested():
            for name in sorted(set(usernames)):
                member = recipient(session, name)
                if member is None or not member.wants(opt):
                    continue
                if enqueue(
                    session,
                    kind=kind,
                    recipient=member.address,
                    username=name,
                    params=params,
                    dedupe_key=f"{kind}:{dedupe}:{name}"[:255],
                ):
                    queued += 1
    except Exception:  # a notice must never undo what it tells about
        log.exception("notice not queued", extra={"kind": kind, "outcome": "error"})
    return queued


def on_answer(session: Session, question_id: int, author: str) -> int:
    """``author`` just added an answer to the question: tell the asker (unless it is them)."""
    from hub.store.usage_models import Answer, Question

    session.flush()  # the new answer gets its id
    question = session.get(Question, question_id)
    answer_id = session.scalar(
        sa.select(sa.func.max(Answer.id)).where(
            Answer.question_id == question_id, Answer.author == author
        )
    )
    if question is None or answer_id is None or question.author == author:
        return 0
    params = {
        "course": question.course_id,
        "question": question_id,
        "title": question.title,
        "author": author,
    }
    return _queue(session, "answer", [question.author], params, f"{answer_id}")


def on_accept(session: Session, question_id: int, answer_id: int, by: str) -> int:
    """An answer was accepted: tell its author and the asker (not whoever accepted it)."""
    from hub.store.usage_models import Answer, Question

    question = session.get(Question, question_id)
    row = session.get(Answer, answer_id)
    if question is None or row is None:
        return 0
    params = {
        "course": question.course_id,
        "question": question_id,
        "title": question.title,
        "author": row.author,
    }
    people = {row.author, question.author} - {by}
    return _queue(session, "accepted", people, params, f"{answer_id}")


def on_announcement(
    session: Session, course_id: str, author: str, text: str, posted: datetime
) -> int:
    """An announcement was posted: tell the course's learners (not its author)."""
    excerpt = text if len(text) <= 600 else text[:600] + "…"
    params = {"course": course_id, "author": author, "text": excerpt}
    people = learners_of(session, course_id) - {author}
    return _queue(session, "announcement", people, params, f"{course_id}:{posted.isoformat()}")


def on_feedback_released(
    session: Session, course_id: str, assignment: str, students: Iterable[str], release: str
) -> int:
    """Feedback was released: tell each student it is for.

    ``release`` names this release: a second call with the same one (a grading job run again
    after its worker died) queues nothing more; a new release of the same assignment does.
    """
    params = {"course": course_id, "assignment": assignment}
    return _queue(session, "feedback", students, params, f"{course_id}:{assignment}:{release}")


def feedback_released(
    db: Database, course_id: str, assignment: str, students: Iterable[str], release: str
) -> int:
    """:func:`on_feedback_released` in a transaction of its own (blocking); the number queued."""
    with db.transaction() as session:
        return on_feedback_released(session, course_id, assignment, students, release)


def queue_deadline_reminders(
    db: Database,
    deadlines: Iterable[tuple[str, str, str, datetime]],
    *,
    now: datetime | None = None,
    within: timedelta = timedelta(hours=24),
) -> int:
    """For each ``(course_id, assignment_id, title, due)`` due within ``within`` from ``now``,
    queue one reminder per learner (once: the dedupe key names the deadline)."""
    moment = now or datetime.now(UTC)
    queued = 0
    with db.transaction() as session:
        for course_id, assignment_id, title, due in deadlines:
            if not moment < due <= moment + within:
                continue
            params = {
                "course": course_id,
                "assignment": title,
                # Worded at send time in the member's language and time zone (hub/mail/sender.py).
                "due_at": iso(due.astimezone(UTC)),
            }
            queued += _queue(
                session,
                "deadline",
                learners_of(session, course_id),
                params,
                f"{course_id}:{assignment_id}:{due.isoformat()}",
            )
    return queued
