"""Grading jobs: the one owner of what a job may ask for and of the `grading_jobs` rows.

Instructors ask for grading from their dashboard; the LearnHub service (unprivileged) checks the
request with :func:`check_request` and only inserts a row (:func:`enqueue`). `learnhub grader
worker` (root, for Docker) claims rows (:func:`claim_next`), checks them again with the same
:func:`check_request` against a freshly loaded catalog (a row is data from a database the most
exposed process writes), runs them and records progress and outcome. Nothing from a row reaches
a shell or a path before it passed that check: the course must be in the catalog, the
assignment listed in its `course.yaml`, every argument named in the kind's allow-list with the
right type.

A refusal is a :class:`JobRefused` carrying an i18n key and its values, so the page translates it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hub.courses import Catalog
from hub.errors import LearnHubError
from hub.store import Database, GradingJob, utcnow
from hub.store.job_models import ACTIVE_STATES, COURSE_JOB_KINDS, JOB_KINDS

#: Arguments each kind accepts, with their type; nothing else is stored or run.
ALLOWED_ARGS: dict[str, dict[str, type]] = {
    "release": {"force": bool},
    "collect": {},
    "autograde": {"all": bool},
    "regrade-one": {"student": str},
    "feedback": {},
    "export": {"exporter": str},
    "extend": {"student": str, "hours": float},
    "publish": {"from_course": bool},
}
#: Export formats, each an nbgrader ExportPlugin of grader/export.py (named here, where the
#: service checks requests without importing nbgrader).
EXPORT_FORMATS = ("csv", "moodle")
#: Arguments a kind cannot do without.
REQUIRED_ARGS: dict[str, frozenset[str]] = {
    "regrade-one": frozenset({"student"}),
    "extend": frozenset({"student", "hours"}),
}
#: A learner's name as nbgrader's folders and the gradebook hold it: no slash, no leading dot,
#: nothing a path or a shell could read as syntax.
STUDENT_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$")
#: Longest extension: a year.
MAX_EXTENSION_HOURS = 24 * 366
#: Biggest args object accepted (bytes of JSON).
MAX_ARGS_BYTES = 1024
#: A job whose worker died this many times is left ``interrupted`` instead of queued again:
#: a job that kills its worker must not kill every worker after it.
MAX_ATTEMPTS = 3


class JobRefused(LearnHubError):
    """A job request (from a form, or a row the worker claimed) that is not allowed.

    ``key`` names the reason in :mod:`hub.i18n`; ``values`` fill it in.
    """

    def __init__(self, key: str, **values: Any) -> None:
        self.key = key
        self.values = values
        details = ", ".join(f"{k}={v!r}" for k, v in sorted(values.items()))
        super().__init__(f"grading job refused: {key} ({details})")


class JobConflict(LearnHubError):
    """The course already has a queued or running job: it must finish first."""

    def __init__(self, active: dict[str, Any]) -> None:
        self.active = active
        super().__init__(
            f"{active['course']} already has grading job #{active['id']} "
            f"({active['kind']} {active['assignment']}, {active['state']}); wait until it ends"
        )


@dataclass(frozen=True)
class JobRequest:
    """A checked request: a known course and assignment, an allowed kind and arguments."""

    course_id: str
    assignment: str
    kind: str
    args: dict[str, Any] = field(default_factory=dict)


def check_request(
    catalog: Catalog, course_id: object, kind: object, assignment: object, args: object
) -> JobRequest:
    """``kind`` of ``assignment`` in ``course_id`` with ``args``, or :class:`JobRefused`.

    The service calls it before inserting a row, the worker again before running one.
    """
    entry = catalog.get(course_id) if isinstance(course_id, str) else None
    if entry is None or not isinstance(course_id, str):
        raise JobRefused("job_unknown_course", course=str(course_id)[:64])
    if not isinstance(kind, str) or kind not in JOB_KINDS:
        raise JobRefused("job_unknown_kind", job_kind=str(kind)[:32], kinds=", ".join(JOB_KINDS))
    if kind in COURSE_JOB_KINDS:
        if assignment != "":
            raise JobRefused("job_unknown_assignment", assignment=str(assignment)[:128], known="")
    elif not isinstance(assignment, str) or entry.course.assignment(assignment) is None:
        known = ", ".join(a.id for a in entry.course.assignments)
        raise JobRefused("job_unknown_assignment", assignment=str(assignment)[:128], known=known)
    if not isinstance(args, dict):
        raise JobRefused("job_bad_args", job_kind=kind, allowed=_allowed(kind))
    allowed = ALLOWED_ARGS[kind]
    unknown = sorted(str(name) for name in args if name not in allowed)
    if unknown:
        raise JobRefused("job_bad_args", job_kind=kind, allowed=_allowed(kind))
    missing = sorted(REQUIRED_ARGS.get(kind, frozenset()) - set(args))
    if missing:
        raise JobRefused("job_missing_args", job_kind=kind, missing=", ".join(missing))
    checked: dict[str, Any] = {}
    for name, value in args.items():
        checked[name] = _check_value(kind, name, allowed[name], value)
    return JobRequest(course_id=course_id, assignment=assignment, kind=kind, args=checked)


def _allowed(kind: str) -> str:
    return ", ".join(ALLOWED_ARGS.get(kind, {})) or "none"


def _check_value(kind: str, name: str, expected: type, value: Any) -> Any:
    if expected is bool:
        if not isinstance(value, bool):
            raise JobRefused("job_bad_args", job_kind=kind, allowed=_allowed(kind))
        return value
    if expected is float:
        # bool is an int: refused, like every number that is not finite and in range.
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise JobRefused("job_bad_hours", maximum=MAX_EXTENSION_HOURS)
        hours = float(value)
        if not math.isfinite(hours) or not 0 <= hours <= MAX_EXTENSION_HOURS:
            raise JobRefused("job_bad_hours", maximum=MAX_EXTENSION_HOURS)
        return hours
    if name == "exporter":
        if value not in EXPORT_FORMATS:
            formats = ", ".join(EXPORT_FORMATS)
            raise JobRefused("job_bad_exporter", exporter=str(value)[:32], formats=formats)
        return value
    if not isinstance(value, str) or not STUDENT_PATTERN.fullmatch(value):
        raise JobRefused("job_bad_student", student=str(value)[:64])
    return value


def request_from_row(catalog: Catalog, job: Mapping[str, Any]) -> JobRequest:
    """Check a claimed row (:func:`job_row`) as :func:`check_request` checks a form."""
    raw = job.get("args_json", "")
    if not isinstance(raw, str) or len(raw.encode()) > MAX_ARGS_BYTES:
        raise JobRefused("job_bad_args", job_kind=str(job.get("kind")), allowed="?")
    try:
        args = json.loads(raw)
    except ValueError:
        raise JobRefused("job_bad_args", job_kind=str(job.get("kind")), allowed="?") from None
    return check_request(catalog, job.get("course"), job.get("kind"), job.get("assignment"), args)


# --- rows ---------------------------------------------------------------------------------


def job_view(job: GradingJob) -> dict[str, Any]:
    """What the dashboard shows of a job (its JSON): never the export's content itself."""
    progress, args = _json_object(job.progress), _json_object(job.args)
    return {
        "id": job.id,
        "course": job.course_id,
        "assignment": job.assignment_id,
        "kind": job.kind,
        "args": args,
        "requested_by": job.requested_by,
        "state": job.state,
        "progress": progress,
        "error": job.error or "",
        "attempts": job.attempts,
        "has_result": job.result is not None,
        "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "updated_at": _iso(job.updated_at),
        "finished_at": _iso(job.finished_at),
    }


def _json_object(text: str | None) -> dict[str, Any]:
    """A JSON object from a row, or {} for anything else (a forged row must not break a page)."""
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def job_row(job: GradingJob) -> dict[str, Any]:
    """What the worker gets of a claimed job: the raw row, to be checked again."""
    return {
        "id": job.id,
        "course": job.course_id,
        "assignment": job.assignment_id,
        "kind": job.kind,
        "args_json": job.args,
        "requested_by": job.requested_by,
        "attempts": job.attempts,
        "progress": job.progress,
    }


def _iso(moment: datetime | None) -> str:
    return moment.isoformat() if moment else ""


def _active(session: Session, course_id: str) -> GradingJob | None:
    return session.scalars(
        sa.select(GradingJob)
        .where(GradingJob.course_id == course_id, GradingJob.state.in_(ACTIVE_STATES))
        .order_by(GradingJob.id)
        .limit(1)
    ).first()


def enqueue(db: Database, request: JobRequest, requested_by: str) -> dict[str, Any]:
    """Insert ``request`` as a queued job; :class:`JobConflict` when the course has one active.

    The partial unique index decides a race between two requests: the loser's insert fails and
    it reads the winner's row for the message.
    """

    def insert(session: Session) -> dict[str, Any]:
        active = _active(session, request.course_id)
        if active is not None:
            raise JobConflict(job_view(active))
        now = utcnow()
        job = GradingJob(
            course_id=request.course_id,
            assignment_id=request.assignment,
            kind=request.kind,
            args=json.dumps(request.args, sort_keys=True),
            requested_by=requested_by,
            state="queued",
            progress="{}",
            attempts=0,
            created_at=now,
            updated_at=now,
        )
        session.add(job)
        session.flush()
        return job_view(job)

    try:
        with db.transaction() as session:
            return insert(session)
    except IntegrityError:
        with db.transaction() as session:
            active = _active(session, request.course_id)
            if active is None:
                raise
            raise JobConflict(job_view(active)) from None


def course_jobs(db: Database, course_id: str, *, limit: int = 20) -> list[dict[str, Any]]:
    """The course's latest jobs, newest first."""
    with db.transaction() as session:
        jobs = session.scalars(
            sa.select(GradingJob)
            .where(GradingJob.course_id == course_id)
            .order_by(GradingJob.id.desc())
            .limit(limit)
        ).all()
        return [job_view(job) for job in jobs]


def job_result(db: Database, course_id: str, job_id: int, kind: str) -> str | None:
    """The result of the course's finished job ``job_id`` of ``kind`` (the export's CSV)."""
    with db.transaction() as session:
        job = session.get(GradingJob, job_id)
        if job is None or job.course_id != course_id or job.kind != kind or job.state != "done":
            return None
        return job.result


class JobStore:
    """The worker's side of the rows, in LearnHub's database (run as the service's user)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def claim(self, worker: str) -> dict[str, Any] | None:
        """Take the oldest queued job: ``running``, owned by ``worker``. None when none waits.

        The conditional UPDATE is the claim: of two workers only one changes the row.
        """
        with self.db.transaction() as session:
            job = session.scalars(
                sa.select(GradingJob)
                .where(GradingJob.state == "queued")
                .order_by(GradingJob.id)
                .limit(1)
            ).first()
            if job is None:
                return None
            now = utcnow()
            claimed = session.execute(
                sa.update(GradingJob)
                .where(GradingJob.id == job.id, GradingJob.state == "queued")
                .values(
                    state="running",
                    worker=worker,
                    attempts=GradingJob.attempts + 1,
                    started_at=now,
                    updated_at=now,
                )
            )
            if claimed.rowcount != 1:  # type: ignore[attr-defined]
                return None
            session.refresh(job)
            return job_row(job)

    def running(self) -> list[dict[str, Any]]:
        """Every running job: id, worker, when it was claimed and when it last reported."""
        with self.db.transaction() as session:
            jobs = session.scalars(sa.select(GradingJob).where(GradingJob.state == "running"))
            return [
                {
                    "id": j.id,
                    "worker": j.worker or "",
                    "started_at": _iso(j.started_at),
                    "updated_at": _iso(j.updated_at),
                }
                for j in jobs
            ]

    def progress(self, job_id: int, progress: dict[str, Any]) -> None:
        """Record the job's progress (per submission) as it goes."""
        with self.db.transaction() as session:
            session.execute(
                sa.update(GradingJob)
                .where(GradingJob.id == job_id, GradingJob.state == "running")
                .values(progress=json.dumps(progress), updated_at=utcnow())
            )

    def finish(
        self, job_id: int, state: str, error: str | None = None, result: str | None = None
    ) -> None:
        """Record the outcome: ``done`` or ``failed`` (with its reason)."""
        if state not in ("done", "failed"):
            raise ValueError(f"a job finishes done or failed, not {state!r}")
        now = utcnow()
        with self.db.transaction() as session:
            session.execute(
                sa.update(GradingJob)
                .where(GradingJob.id == job_id)
                .values(state=state, error=error, result=result, updated_at=now, finished_at=now)
            )

    def release(self, job_id: int, reason: str) -> str:
        """A running job its worker stopped on purpose (SIGINT/SIGTERM): queued again with its
        progress, for the next worker to resume. Returns the new state.

        Unlike :meth:`requeue` the attempt is given back: a stop is the operator's (the Hub
        stopping its services), not the job's, so it never counts toward :data:`MAX_ATTEMPTS`.
        """
        now = utcnow()
        with self.db.transaction() as session:
            job = session.get(GradingJob, job_id)
            if job is None or job.state != "running":
                return job.state if job else "missing"
            job.state, job.worker, job.updated_at = "queued", None, now
            job.attempts = max(0, job.attempts - 1)
            job.error = f"{reason}; queued again"
            return job.state

    def requeue(self, job_id: int, reason: str) -> str:
        """A running job whose worker died: queued again (its progress kept), or
        ``interrupted`` after :data:`MAX_ATTEMPTS`. Returns the new state."""
        now = utcnow()
        with self.db.transaction() as session:
            job = session.get(GradingJob, job_id)
            if job is None or job.state != "running":
                return job.state if job else "missing"
            job.updated_at = now
            job.worker = None
            if job.attempts >= MAX_ATTEMPTS:
                job.state, job.finished_at = "interrupted", now
                job.error = f"{reason}; interrupted {job.attempts} times, not tried again"
            else:
                job.state = "queued"
                job.error = f"{reason}; queued again"
            return job.state
