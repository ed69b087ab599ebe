"""Course completion and certificates: who passed, and the certificates they were given.

A course's ``completion:`` rule (:class:`hub.courses.Completion`) is evaluated on the grades of
its nbgrader gradebook (:func:`evaluate`), after late penalties, with an assignment that has no
graded submission counting as 0 %. The grader issues certificates when an instructor releases
feedback (:func:`issue_certificates`): that is the moment the grades, hand grades included, are
the ones the learner is told. A certificate, once issued, stays: a later regrade does not take
it back. It is revoked only when the learner's purchase of the course was refunded or a dispute
was lost (the money went back, :func:`certificate_status`), which is decided when it is read,
so a refund revokes it at once and nothing has to remember to.

The certificate's id is 128 random bits: its verification URL can be shared with anyone, and
nobody can find another learner's certificate by trying ids.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from hub.access.status import ACCESS_STATUSES, EntitlementReason
from hub.courses import Course
from hub.store import Certificate, Database, Entitlement, utcnow

#: A certificate id as issued (``secrets.token_urlsafe(16)``); anything else is not one.
CERTIFICATE_ID_PATTERN = r"[A-Za-z0-9_-]{22}"
#: Entitlement reasons that revoke a certificate: the learner got their money back.
REVOKING_REASONS = frozenset({EntitlementReason.REFUNDED, EntitlementReason.DISPUTE_LOST})


@dataclass(frozen=True)
class LearnerCompletion:
    """One learner's standing against the course's completion rule."""

    learner: str
    #: Percent per counted assignment (0 when nothing is graded).
    percents: dict[str, float]
    #: The counted assignments' points together, in percent of their maximum.
    total_percent: float
    passed: bool


def evaluate(course: Course, rows: Iterable[Mapping[str, Any]]) -> list[LearnerCompletion]:
    """Every learner with a graded submission, against ``course.completion`` (sorted by name).

    ``rows`` are the gradebook's grade rows (``grader.course.GradingCourse.grades``): course,
    assignment, student, score, max_score, late_penalty. Without a rule nobody passes.
    """
    counted = course.counted_assignments()
    maxima = {a: 0.0 for a in counted}
    scores: dict[str, dict[str, float]] = {}
    for row in rows:
        assignment = str(row["assignment"])
        if assignment not in maxima:
            continue
        maximum = float(row["max_score"] or 0)
        maxima[assignment] = max(maxima[assignment], maximum)
        net = max(0.0, float(row["score"]) - float(row.get("late_penalty") or 0))
        scores.setdefault(str(row["student"]), {})[assignment] = net
    rule = course.completion
    results = []
    for learner in sorted(scores):
        mine = scores[learner]
        percents = {a: (100 * mine.get(a, 0.0) / maxima[a] if maxima[a] else 0.0) for a in counted}
        total_max = sum(maxima.values())
        total = 100 * sum(mine.get(a, 0.0) for a in counted) / total_max if total_max else 0.0
        passed = rule is not None and all(
            (
                rule.min_percent_each is None
                or all(p >= rule.min_percent_each for p in percents.values()),
                rule.min_percent_total is None or total >= rule.min_percent_total,
            )
        )
        results.append(LearnerCompletion(learner, percents, round(total, 2), passed))
    return results


def issue_certificates(
    db: Database, course: Course, results: Iterable[LearnerCompletion]
) -> list[str]:
    """Give every learner who passed and has none a certificate; return who got one now.

    Idempotent: the unique (learner, course) constraint decides a race between two graders.
    """
    issued = []
    for result in results:
        if not result.passed:
            continue
        try:
            with db.transaction() as session:
                exists = session.scalars(
                    sa.select(Certificate.id).where(
                        Certificate.username == result.learner, Certificate.course_id == course.id
                    )
                ).first()
                if exists is not None:
                    continue
                session.add(
                    Certificate(
                        id=secrets.token_urlsafe(16),
                        username=result.learner,
                        course_id=course.id,
                        course_title=course.title,
                        percent=result.total_percent,
                        issued_at=utcnow(),
                    )
                )
        except IntegrityError:
            continue
        issued.append(result.learner)
    return issued


@dataclass(frozen=True)
class CertificateView:
    """A certificate as its page shows it, with whether it is still valid."""

    id: str
    learner: str
    course_id: str
    course_title: str
    percent: float
    issued_at: datetime
    #: ``valid`` or ``revoked``.
    status: str
    #: Why it was revoked (an entitlement reason), else "".
    revoked_reason: str = ""


def find_certificate(db: Database, certificate_id: str) -> CertificateView | None:
    """The certificate with this id and its status now; None when there is none (blocking)."""
    with db.transaction() as session:
        cert = session.get(Certificate, certificate_id)
        if cert is None:
            return None
        status, reason = _status(session, cert.username, cert.course_id)
        return CertificateView(
            id=cert.id,
            learner=cert.username,
            course_id=cert.course_id,
            course_title=cert.course_title,
            percent=cert.percent,
            issued_at=cert.issued_at,
            status=status,
            revoked_reason=reason,
        )


def certificate_status(db: Database, username: str, course_id: str) -> tuple[str, str]:
    """``(valid | revoked, reason)`` for ``username``'s certificate of ``course_id``."""
    with db.transaction() as session:
        return _status(session, username, course_id)


def _status(session: Any, username: str, course_id: str) -> tuple[str, str]:
    rows = session.scalars(
        sa.select(Entitlement).where(
            Entitlement.username == username, Entitlement.course_id == course_id
        )
    ).all()
    if any(row.status in ACCESS_STATUSES for row in rows):
        return "valid", ""
    for row in rows:
        if row.status_reason in REVOKING_REASONS:
            return "revoked", str(row.status_reason)
    return "valid", ""


def learner_certificates(db: Database, username: str) -> dict[str, str]:
    """``{course id: certificate id}`` of ``username``'s certificates (blocking)."""
    with db.transaction() as session:
        rows = session.execute(
            sa.select(Certificate.course_id, Certificate.id).where(Certificate.username == username)
        ).all()
        return {course_id: cert_id for course_id, cert_id in rows}


def course_certificates(db: Database, course_id: str) -> dict[str, str]:
    """``{learner: certificate id}`` of a course's certificates (blocking)."""
    with db.transaction() as session:
        rows = session.execute(
            sa.select(Certificate.username, Certificate.id).where(
                Certificate.course_id == course_id
            )
        ).all()
        return {username: cert_id for username, cert_id in rows}
