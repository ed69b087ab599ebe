"""Grading jobs asked for from the instructor dashboard (migration 0010_grading_jobs)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from hub.store.models import Base, UTCDateTime

#: What a job may do; the same names as `learnhub grader` (plus one learner's regrade), and
#: `publish` (`learnhub materials publish`, hub/publishing.py).
JOB_KINDS = (
    "release",
    "collect",
    "autograde",
    "feedback",
    "export",
    "extend",
    "regrade-one",
    "publish",
)
#: Kinds about the whole course: their assignment is "".
COURSE_JOB_KINDS = frozenset({"publish"})
#: ``queued`` -> ``running`` -> ``done`` | ``failed``; a job whose worker died is queued again,
#: and ``interrupted`` once it was interrupted too often to try again.
JOB_STATES = ("queued", "running", "done", "failed", "interrupted")
#: States that hold a course's one active slot (partial unique index).
ACTIVE_STATES = ("queued", "running")


class GradingJob(Base):
    """One grading step of one course's assignment, asked for by an instructor."""

    __tablename__ = "grading_jobs"
    __table_args__ = (
        sa.CheckConstraint(
            "kind IN ('release', 'collect', 'autograde', 'feedback', 'export', 'extend', "
            "'regrade-one', 'publish')",
            name="ck_grading_jobs_kind",
        ),
        sa.CheckConstraint(
            "state IN ('queued', 'running', 'done', 'failed', 'interrupted')",
            name="ck_grading_jobs_state",
        ),
        sa.Index("ix_grading_jobs_course", "course_id", "id"),
        sa.Index(
            "uq_grading_jobs_one_active",
            "course_id",
            unique=True,
            sqlite_where=sa.text("state IN ('queued', 'running')"),
            postgresql_where=sa.text("state IN ('queued', 'running')"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    course_id: Mapped[str] = mapped_column(sa.String(64))
    assignment_id: Mapped[str] = mapped_column(sa.String(128))
    kind: Mapped[str] = mapped_column(sa.String(16))
    #: JSON object, checked against the kind's allow-list by the service and again by the worker.
    args: Mapped[str] = mapped_column(sa.Text)
    requested_by: Mapped[str] = mapped_column(sa.String(255))
    state: Mapped[str] = mapped_column(sa.String(16), index=True)
    #: JSON: ``{"submissions": {learner: {state, score, max_score, reason}}, "skipped": [...]}``.
    progress: Mapped[str] = mapped_column(sa.Text)
    #: What the job made for the instructor (the export's CSV), when it made something.
    result: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    error: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    #: ``host:pid`` of the worker running it, so a dead worker's job is found again.
    worker: Mapped[str | None] = mapped_column(sa.String(255), nullable=True)
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
