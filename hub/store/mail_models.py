"""Mail: the outbox of messages to send, and each member's address and notice choices."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from hub.store.models import Base, UTCDateTime


class OutboxMessage(Base):
    """One mail to send. Written in the same step as what it tells about; the service's sender
    takes it out (state ``sent``), retries it with back-off while the SMTP server refuses, and
    marks it ``failed`` only after ``email.give_up_hours``: a message is never dropped silently.
    """

    __tablename__ = "mail_outbox"
    __table_args__ = (sa.Index("ix_mail_outbox_due", "state", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(32))
    recipient: Mapped[str] = mapped_column(sa.String(320))
    username: Mapped[str | None] = mapped_column(sa.String(255), nullable=True)
    #: What the mail says, as JSON parameters: the service words it at send time, in the
    #: member's language then, so hooks that queue a notice need only the database.
    params: Mapped[str] = mapped_column(sa.Text)
    #: The same notice is queued once (a deadline reminder, a re-run feedback release).
    dedupe_key: Mapped[str | None] = mapped_column(sa.String(255), nullable=True, unique=True)
    state: Mapped[str] = mapped_column(sa.String(16), default="queued")
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(sa.String(500), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class MemberEmail(Base):
    """A member's address (counted only once verified), mail language and notice opt-outs."""

    __tablename__ = "member_emails"

    username: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    address: Mapped[str] = mapped_column(sa.String(320), index=True)
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    language: Mapped[str] = mapped_column(sa.String(8), default="en")
    #: Comma-separated notice kinds the member turned off.
    opt_outs: Mapped[str] = mapped_column(sa.String(255), default="")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
