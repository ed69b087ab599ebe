"""SQLAlchemy models of LearnHub's own database (entitlements and Stripe bookkeeping).

The schema itself is owned by the Alembic migrations in ``hub/store/migrations``; these models
must match them. Times are stored as naive UTC (SQLite has no time zones) and read back as aware
UTC datetimes through :class:`UTCDateTime`, so the same code runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

#: Where an entitlement comes from.
SOURCES = ("purchase", "subscription", "manual", "instructor")
#: Entitlement states; only ``active`` and ``past_due`` (within grace) give access.
STATUSES = ("active", "pending", "past_due", "revoked")
#: What processing a Stripe event did (``queued``: accepted, not processed yet; ``failed``:
#: permanently, e.g. Stripe has no such object, so it is never retried).
OUTCOMES = ("queued", "applied", "noop", "ignored", "error", "failed")


def utcnow() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime, stored as naive UTC so SQLite and PostgreSQL agree."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; LearnHub stores aware UTC datetimes only")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    """Declarative base of every LearnHub table."""


class Entitlement(Base):
    """A user's right to a course (``course_id``) or to a plan (``plan_id``), and why."""

    __tablename__ = "entitlements"
    __table_args__ = (
        sa.CheckConstraint(
            "(course_id IS NULL) <> (plan_id IS NULL)", name="ck_entitlements_course_xor_plan"
        ),
        sa.CheckConstraint(
            "source IN ('purchase', 'subscription', 'manual', 'instructor')",
            name="ck_entitlements_source",
        ),
        sa.CheckConstraint(
            "status IN ('active', 'pending', 'past_due', 'revoked')", name="ck_entitlements_status"
        ),
        sa.Index("ix_entitlements_username", "username"),
        sa.Index("ix_entitlements_payment_intent", "stripe_payment_intent_id"),
        # One course's rows, for its instructors (migration 0019).
        sa.Index("ix_entitlements_course_id", "course_id"),
        sa.Index("ix_entitlements_plan_id", "plan_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(sa.String(255))
    course_id: Mapped[str | None] = mapped_column(sa.String(64))
    plan_id: Mapped[str | None] = mapped_column(sa.String(64))
    source: Mapped[str] = mapped_column(sa.String(16))
    status: Mapped[str] = mapped_column(sa.String(16))
    #: Why the status is what it is (``refunded``, ``dispute_lost``, ``canceled`` ...).
    status_reason: Mapped[str | None] = mapped_column(sa.String(64))
    #: End of the paid period (subscriptions); past_due access lasts until this plus the grace.
    period_end: Mapped[datetime | None] = mapped_column(UTCDateTime())
    stripe_customer_id: Mapped[str | None] = mapped_column(sa.String(255))
    stripe_checkout_session_id: Mapped[str | None] = mapped_column(sa.String(255), unique=True)
    stripe_subscription_id: Mapped[str | None] = mapped_column(sa.String(255), unique=True)
    stripe_payment_intent_id: Mapped[str | None] = mapped_column(sa.String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class StripeEvent(Base):
    """A Stripe event we received; the unique id makes processing exactly-once.

    ``outcome`` is ``queued`` from the moment the webhook accepted it until the event queue
    processed it (then ``applied``, ``noop``, ``ignored`` or ``error``).
    """

    __tablename__ = "stripe_events"
    __table_args__ = (sa.Index("ix_stripe_events_outcome", "outcome"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[str] = mapped_column(sa.String(255), unique=True)
    type: Mapped[str] = mapped_column(sa.String(128))
    created: Mapped[datetime] = mapped_column(UTCDateTime())
    payload: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    outcome: Mapped[str] = mapped_column(sa.String(16))
    error: Mapped[str | None] = mapped_column(sa.Text)


class CheckoutSession(Base):
    """A Checkout Session we created, so the success page and reports can find it."""

    __tablename__ = "checkout_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[str] = mapped_column(sa.String(255), unique=True)
    username: Mapped[str] = mapped_column(sa.String(255))
    course_id: Mapped[str | None] = mapped_column(sa.String(64))
    plan_id: Mapped[str | None] = mapped_column(sa.String(64))
    mode: Mapped[str] = mapped_column(sa.String(16))
    status: Mapped[str] = mapped_column(sa.String(16))
    #: What LearnHub asked Stripe to charge: the configured Stripe price (if any), the amount
    #: in minor units and the currency. Fulfilment checks the paid line item against these.
    price_id: Mapped[str | None] = mapped_column(sa.String(255))
    amount: Mapped[int | None] = mapped_column(sa.BigInteger)
    currency: Mapped[str | None] = mapped_column(sa.String(3))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class Payment(Base):
    """Money a verified LearnHub checkout or subscription invoice brought in (the revenue ledger).

    Written only from objects re-fetched from Stripe after they were checked to be LearnHub's
    (a recorded checkout session, a subscription LearnHub fulfilled), keyed by the Stripe id,
    so a webhook payload can neither add a row nor change an amount.
    """

    __tablename__ = "payments"
    __table_args__ = (sa.Index("ix_payments_course_id", "course_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    #: The checkout session (one-off purchase) or invoice (subscription) id.
    stripe_id: Mapped[str] = mapped_column(sa.String(255), unique=True)
    kind: Mapped[str] = mapped_column(sa.String(16))
    username: Mapped[str] = mapped_column(sa.String(255))
    course_id: Mapped[str | None] = mapped_column(sa.String(64))
    plan_id: Mapped[str | None] = mapped_column(sa.String(64))
    currency: Mapped[str] = mapped_column(sa.String(3))
    #: Paid, in minor units (after discounts), and how much of it went back (refunds, lost
    #: disputes).
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    amount_refunded: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    paid_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class DemoStripeObject(Base):
    """An object of the offline demo payment provider, in Stripe's own JSON shape.

    Only used with ``payments.provider: demo``: the demo "Stripe API" answers re-fetches from
    this table, so the webhook path is exercised exactly as with Stripe.
    """

    __tablename__ = "demo_stripe_objects"
    __table_args__ = (sa.Index("ix_demo_stripe_objects_object", "object", "created"),)

    id: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    object: Mapped[str] = mapped_column(sa.String(64))
    created: Mapped[int] = mapped_column(sa.BigInteger)
    data: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
