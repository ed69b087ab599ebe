"""Course server usage, for container-hours and the operator's cost figure."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from hub.store.models import Base, UTCDateTime


class ServerUsage(Base):
    """One run of one course server: from its start to when it was last seen running."""

    __tablename__ = "server_usage"
    __table_args__ = (
        sa.UniqueConstraint("username", "course_id", "started_at", name="uq_server_usage_run"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(sa.String(255))
    course_id: Mapped[str] = mapped_column(sa.String(64))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())


class GradeSummary(Base):
    """A learner's latest autograded score for an assignment (copied from the gradebook).

    The gradebook stays the source of truth for grading; this copy lets pages show progress
    without opening every course's gradebook on each request.
    """

    __tablename__ = "grade_summaries"
    __table_args__ = (
        sa.UniqueConstraint("course_id", "assignment_id", "student", name="uq_grade_summary"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    course_id: Mapped[str] = mapped_column(sa.String(64))
    assignment_id: Mapped[str] = mapped_column(sa.String(128))
    student: Mapped[str] = mapped_column(sa.String(255))
    score: Mapped[float] = mapped_column(sa.Float)
    max_score: Mapped[float] = mapped_column(sa.Float)
    graded_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AutogradeRun(Base):
    """One autograded submission: how it ended and how long it took (no learner name).

    Written by ``learnhub grader autograde`` (:func:`hub.autograde_runs.record_autograde_runs`),
    read back as Prometheus figures by the service (``hub.service.monitoring``).
    """

    __tablename__ = "autograde_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    course_id: Mapped[str] = mapped_column(sa.String(64))
    assignment_id: Mapped[str] = mapped_column(sa.String(128))
    #: ``ok``, ``limit`` (a sandbox limit was hit) or ``error`` (no new grade).
    outcome: Mapped[str] = mapped_column(sa.String(16))
    #: Which limit or failure (``timeout``, ``memory``, ``sandbox-error`` ...), else empty.
    reason: Mapped[str] = mapped_column(sa.String(32))
    #: Wall-clock seconds of grading the submission (sandboxes and nbgrader).
    seconds: Mapped[float] = mapped_column(sa.Float)
    #: Seconds its sandbox containers ran, all notebooks together.
    sandbox_seconds: Mapped[float] = mapped_column(sa.Float)
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CourseReview(Base):
    """A member's rating (1-5) and review of a course; one per member and course."""

    __tablename__ = "course_reviews"
    __table_args__ = (sa.UniqueConstraint("course_id", "username", name="uq_course_review"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    course_id: Mapped[str] = mapped_column(sa.String(64))
    username: Mapped[str] = mapped_column(sa.String(255))
    rating: Mapped[int] = mapped_column(sa.Integer)
    text: Mapped[str] = mapped_column(sa.Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Announcement(Base):
    """A message from a course's instructors to its members."""

    __tablename__ = "announcements"

    id: Mapped[int] = mapped_column(primary_key=True)
    course_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    author: Mapped[str] = mapped_column(sa.String(255))
    #: The Markdown the instructor wrote (kept for editing).
    text: Mapped[str] = mapped_column(sa.Text)
    #: ``text`` rendered by :func:`hub.markdown.render` (what pages show).
    text_html: Mapped[str] = mapped_column(sa.Text, server_default="")
    posted_at: Mapped[datetime] = mapped_column(UTCDateTime())
    #: When its author (or, for an announcement, an instructor) last edited it; None: never.
    edited_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


#: A post everyone who may read the course sees.
VISIBLE = "visible"
#: A post a moderator hid: its author and the course's moderators still see it, marked hidden.
HIDDEN = "hidden"
#: A post a moderator deleted: nobody sees it; the row stays for the moderation log.
DELETED = "deleted"


class Question(Base):
    """A member's question in a course's Q&A."""

    __tablename__ = "questions"

    id: Mapped[int] = mapped_column(primary_key=True)
    course_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    author: Mapped[str] = mapped_column(sa.String(255))
    title: Mapped[str] = mapped_column(sa.String(200))
    #: The Markdown the member wrote (kept for editing).
    body: Mapped[str] = mapped_column(sa.Text)
    #: ``body`` rendered by :func:`hub.markdown.render` (what pages show).
    body_html: Mapped[str] = mapped_column(sa.Text, server_default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    accepted_answer_id: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    #: :data:`VISIBLE`, :data:`HIDDEN` or :data:`DELETED`.
    status: Mapped[str] = mapped_column(sa.String(16), server_default=VISIBLE)
    #: A locked question takes no new answers.
    locked: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.false())
    #: When its author (or, for an announcement, an instructor) last edited it; None: never.
    edited_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class Answer(Base):
    """An answer to a question."""

    __tablename__ = "answers"

    id: Mapped[int] = mapped_column(primary_key=True)
    question_id: Mapped[int] = mapped_column(sa.ForeignKey("questions.id"), index=True)
    author: Mapped[str] = mapped_column(sa.String(255))
    #: The Markdown the member wrote (kept for editing).
    body: Mapped[str] = mapped_column(sa.Text)
    #: ``body`` rendered by :func:`hub.markdown.render` (what pages show).
    body_html: Mapped[str] = mapped_column(sa.Text, server_default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    #: :data:`VISIBLE`, :data:`HIDDEN` or :data:`DELETED`.
    status: Mapped[str] = mapped_column(sa.String(16), server_default=VISIBLE)
    #: When its author (or, for an announcement, an instructor) last edited it; None: never.
    edited_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class AnswerVote(Base):
    """One member's upvote of an answer (at most one each)."""

    __tablename__ = "answer_votes"
    __table_args__ = (sa.UniqueConstraint("answer_id", "username", name="uq_answer_vote"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    answer_id: Mapped[int] = mapped_column(sa.ForeignKey("answers.id"), index=True)
    username: Mapped[str] = mapped_column(sa.String(255))


class PostReport(Base):
    """A member's report of a question or an answer to the course's moderators.

    One per member and post (reporting again changes nothing); ``resolved_at`` is set when a
    moderator acts on the post or dismisses its reports.
    """

    __tablename__ = "post_reports"
    __table_args__ = (
        sa.UniqueConstraint("kind", "post_id", "reporter", name="uq_post_report"),
        sa.Index("ix_post_reports_open", "course_id", "resolved_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    course_id: Mapped[str] = mapped_column(sa.String(64))
    #: ``question`` or ``answer``.
    kind: Mapped[str] = mapped_column(sa.String(16))
    post_id: Mapped[int] = mapped_column(sa.Integer)
    reporter: Mapped[str] = mapped_column(sa.String(255))
    reason: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class ModerationAction(Base):
    """One moderator's action on a post (the moderation log): who, what, which course."""

    __tablename__ = "moderation_actions"

    id: Mapped[int] = mapped_column(primary_key=True)
    course_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    moderator: Mapped[str] = mapped_column(sa.String(255))
    #: ``hide``, ``show``, ``delete``, ``lock``, ``unlock`` or ``dismiss``.
    action: Mapped[str] = mapped_column(sa.String(16))
    kind: Mapped[str] = mapped_column(sa.String(16))
    post_id: Mapped[int] = mapped_column(sa.Integer)
    #: The post's author, so the log reads without the post.
    author: Mapped[str] = mapped_column(sa.String(255))
    acted_at: Mapped[datetime] = mapped_column(UTCDateTime())


class PostEdit(Base):
    """What a post said before one edit: moderators see what was reported, even if its author
    changed it since."""

    __tablename__ = "post_edits"
    __table_args__ = (sa.Index("ix_post_edits_post", "kind", "post_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    course_id: Mapped[str] = mapped_column(sa.String(64))
    #: ``question``, ``answer`` or ``announcement``.
    kind: Mapped[str] = mapped_column(sa.String(16))
    post_id: Mapped[int] = mapped_column(sa.Integer)
    editor: Mapped[str] = mapped_column(sa.String(255))
    edited_at: Mapped[datetime] = mapped_column(UTCDateTime())
    #: The question's title before the edit (None for answers and announcements).
    previous_title: Mapped[str | None] = mapped_column(sa.String(200), nullable=True)
    #: The Markdown source before the edit.
    previous_body: Mapped[str] = mapped_column(sa.Text)
