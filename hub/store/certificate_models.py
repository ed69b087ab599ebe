"""Course certificates (migration 0015_certificates)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from hub.store.models import Base, UTCDateTime


class Certificate(Base):
    """A learner passed a course's ``completion:`` rule: one row per learner and course.

    ``id`` is the unguessable public identifier in the verification URL. The course title is
    kept as it was when the certificate was issued (a renamed course does not rename it).
    """

    __tablename__ = "certificates"
    __table_args__ = (
        sa.UniqueConstraint("username", "course_id", name="uq_certificates_learner_course"),
    )

    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    username: Mapped[str] = mapped_column(sa.String(255))
    course_id: Mapped[str] = mapped_column(sa.String(64))
    course_title: Mapped[str] = mapped_column(sa.String(200))
    percent: Mapped[float] = mapped_column(sa.Float)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime())
