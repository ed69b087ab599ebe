"""Tables of the assignment exchange: released assignments, submissions and feedback.

The files themselves live under the exchange root folder (``<data_dir>/service/exchange/``);
these rows index them, so listing never walks a directory and authorisation decisions are made
on rows, not on paths a caller could forge. File locations are derived from row ids (never from
user names or client-supplied paths). The schema is owned by migration ``0002_exchange``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from hub.store.models import Base, UTCDateTime, utcnow


class ExchangeRelease(Base):
    """An assignment an instructor released to a course (one row per course and assignment)."""

    __tablename__ = "exchange_releases"
    __table_args__ = (
        sa.UniqueConstraint("course_id", "assignment_id", name="uq_exchange_releases_assignment"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    course_id: Mapped[str] = mapped_column(sa.String(64))
    assignment_id: Mapped[str] = mapped_column(sa.String(128))
    #: Folder of the released files, relative to the exchange root.
    path: Mapped[str] = mapped_column(sa.String(512))
    size: Mapped[int] = mapped_column(sa.BigInteger)
    #: Relative file paths of the notebooks in the release.
    notebooks: Mapped[list[str]] = mapped_column(sa.JSON)
    released_by: Mapped[str] = mapped_column(sa.String(255))
    released_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ExchangeSubmission(Base):
    """One submission of one learner; never overwritten, a resubmission is a new row."""

    __tablename__ = "exchange_submissions"
    __table_args__ = (
        sa.Index("ix_exchange_submissions_lookup", "course_id", "assignment_id", "student"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    #: Public identifier of the submission (random, so ids cannot be enumerated).
    uid: Mapped[str] = mapped_column(sa.String(32), unique=True)
    course_id: Mapped[str] = mapped_column(sa.String(64))
    assignment_id: Mapped[str] = mapped_column(sa.String(128))
    student: Mapped[str] = mapped_column(sa.String(255))
    #: Server time of the submission.
    submitted_at: Mapped[datetime] = mapped_column(UTCDateTime())
    #: The same moment in nbgrader's ``timestamp.txt`` format (what nbgrader compares).
    timestamp: Mapped[str] = mapped_column(sa.String(64))
    #: Folder of the submitted files, relative to the exchange root.
    path: Mapped[str] = mapped_column(sa.String(512))
    size: Mapped[int] = mapped_column(sa.BigInteger)
    #: ``{notebook path: sha256}`` of the submitted notebooks.
    checksums: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    #: nbgrader's ``submission_secret.txt``: ties released feedback back to this submission.
    secret: Mapped[str] = mapped_column(sa.String(128))


class ExchangeFeedback(Base):
    """Feedback (HTML) on one notebook of one submission, released by an instructor."""

    __tablename__ = "exchange_feedback"
    __table_args__ = (
        sa.UniqueConstraint("submission_id", "notebook_id", name="uq_exchange_feedback_notebook"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    submission_id: Mapped[int] = mapped_column(
        sa.ForeignKey("exchange_submissions.id", ondelete="CASCADE")
    )
    notebook_id: Mapped[str] = mapped_column(sa.String(255))
    #: The HTML file, relative to the exchange root.
    path: Mapped[str] = mapped_column(sa.String(512))
    #: md5 of the HTML, as nbgrader's list compares feedback checksums.
    checksum: Mapped[str] = mapped_column(sa.String(64))
    released_by: Mapped[str] = mapped_column(sa.String(255))
    released_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
