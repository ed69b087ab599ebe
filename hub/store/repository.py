"""Reads and writes of entitlements and Stripe events, inside a caller's transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from hub.store.models import CheckoutSession, Entitlement, StripeEvent, utcnow


class EventAlreadyRecorded(Exception):
    """The event was recorded as done by another transaction; this one must roll back."""


@dataclass(frozen=True)
class EntitlementUpdate:
    """The state one entitlement should have, decided from fresh Stripe objects.

    Identified by ``stripe_subscription_id`` (subscriptions) or ``stripe_checkout_session_id``
    (one-off purchases), so applying the same update again changes nothing.
    """

    username: str
    source: str
    status: str
    course_id: str | None = None
    plan_id: str | None = None
    status_reason: str | None = None
    period_end: datetime | None = None
    stripe_customer_id: str | None = None
    stripe_checkout_session_id: str | None = None
    stripe_subscription_id: str | None = None
    stripe_payment_intent_id: str | None = None


def _find(session: Session, update: EntitlementUpdate) -> Entitlement | None:
    if update.stripe_subscription_id is not None:
        column = Entitlement.stripe_subscription_id
        key = update.stripe_subscription_id
    elif update.stripe_checkout_session_id is not None:
        column = Entitlement.stripe_checkout_session_id
        key = update.stripe_checkout_session_id
    else:
        raise ValueError("an entitlement update needs a subscription or checkout session id")
    return session.scalars(sa.select(Entitlement).where(column == key)).one_or_none()


def apply_update(session: Session, update: EntitlementUpdate) -> bool:
    """Make the matching entitlement look like ``update``; return whether anything changed."""
    row = _find(session, update)
    values: dict[str, Any] = {f.name: getattr(update, f.name) for f in fields(update)}
    if row is None:
        session.add(Entitlement(**values))
        session.flush()
        return True
    changed = False
    for name, value in values.items():
        # A later update never forgets a Stripe id an earlier one learned.
        if value is None and name.startswith("stripe_"):
            continue
        if getattr(row, name) != value:
            setattr(row, name, value)
            changed = True
    if changed:
        row.updated_at = utcnow()
        session.flush()
    return changed


def entitlements(session: Session, username: str | None = None) -> Sequence[Entitlement]:
    """All entitlements, or those of one user."""
    query = sa.select(Entitlement).order_by(Entitlement.id)
    if username is not None:
        query = query.where(Entitlement.username == username)
    return session.scalars(query).all()


def session_id_for_payment_intent(session: Session, payment_intent_id: str) -> str | None:
    """The checkout session id of the purchase paid with this payment intent, if known."""
    return session.scalars(
        sa.select(Entitlement.stripe_checkout_session_id).where(
            Entitlement.stripe_payment_intent_id == payment_intent_id,
            Entitlement.stripe_checkout_session_id.is_not(None),
        )
    ).first()


def event_done(session: Session, event_id: str) -> bool:
    """Whether this Stripe event was already processed (an ``error`` outcome may be retried)."""
    outcome = session.scalars(
        sa.select(StripeEvent.outcome).where(StripeEvent.event_id == event_id)
    ).one_or_none()
    return outcome is not None and outcome != "error"


def record_event(
    session: Session, event: dict[str, Any], outcome: str, error: str | None = None
) -> None:
    """Record ``event`` with its outcome; a previous ``error`` record is overwritten.

    A second first-time record of the same id raises ``IntegrityError`` at flush: that unique
    constraint is what makes processing exactly-once when deliveries race.
    """
    row = session.scalars(
        sa.select(StripeEvent).where(StripeEvent.event_id == event["id"]).with_for_update()
    ).one_or_none()
    if row is not None and row.outcome != "error":
        # Committed by a concurrent delivery after this transaction's first look.
        raise EventAlreadyRecorded(str(event["id"]))
    if row is None:
        row = StripeEvent(
            event_id=event["id"],
            type=str(event.get("type", "")),
            created=datetime.fromtimestamp(int(event.get("created", 0)), tz=utcnow().tzinfo),
            payload=event,
        )
        session.add(row)
    row.outcome = outcome
    row.error = error
    row.received_at = utcnow()
    session.flush()


def recorded_event_ids(session: Session, event_ids: Sequence[str]) -> set[str]:
    """Which of ``event_ids`` are recorded as done."""
    if not event_ids:
        return set()
    return set(
        session.scalars(
            sa.select(StripeEvent.event_id).where(
                StripeEvent.event_id.in_(event_ids), StripeEvent.outcome != "error"
            )
        )
    )


def record_checkout_session(
    session: Session,
    *,
    session_id: str,
    username: str,
    course_id: str | None,
    plan_id: str | None,
    mode: str,
    status: str,
) -> None:
    """Insert or update our copy of a Checkout Session."""
    row = session.scalars(
        sa.select(CheckoutSession).where(CheckoutSession.session_id == session_id)
    ).one_or_none()
    if row is None:
        session.add(
            CheckoutSession(
                session_id=session_id,
                username=username,
                course_id=course_id,
                plan_id=plan_id,
                mode=mode,
                status=status,
            )
        )
    elif row.status != status:
        row.status = status
        row.updated_at = utcnow()
    session.flush()


def active_subscription_ids(session: Session) -> list[str]:
    """Subscriptions whose entitlement is not revoked (for reconciliation)."""
    return list(
        session.scalars(
            sa.select(Entitlement.stripe_subscription_id).where(
                Entitlement.stripe_subscription_id.is_not(None),
                Entitlement.status != "revoked",
            )
        )
    )


def set_manual_access(
    session: Session, username: str, course_id: str, *, active: bool, reason: str
) -> bool:
    """Grant (``active``) or withdraw an operator's manual grant of one course.

    Manual grants are keyed by user and course, so granting twice keeps one row. Returns whether
    anything changed.
    """
    row = session.scalars(
        sa.select(Entitlement).where(
            Entitlement.username == username,
            Entitlement.course_id == course_id,
            Entitlement.source == "manual",
        )
    ).first()
    status = "active" if active else "revoked"
    if row is None:
        if not active:
            return False
        session.add(
            Entitlement(
                username=username,
                course_id=course_id,
                source="manual",
                status=status,
                status_reason=reason,
            )
        )
        session.flush()
        return True
    if row.status == status:
        return False
    row.status = status
    row.status_reason = reason
    row.updated_at = utcnow()
    session.flush()
    return True


def revoke_course(session: Session, username: str, course_id: str, *, reason: str) -> list[str]:
    """Withdraw every direct entitlement of ``username`` to ``course_id`` (manual or purchase).

    Returns the sources that were withdrawn. Membership plans are not touched: they are ended by
    cancelling the subscription, so Stripe and LearnHub never disagree about a plan.
    """
    rows = session.scalars(
        sa.select(Entitlement).where(
            Entitlement.username == username,
            Entitlement.course_id == course_id,
            Entitlement.status != "revoked",
        )
    ).all()
    for row in rows:
        row.status = "revoked"
        row.status_reason = reason
        row.updated_at = utcnow()
    session.flush()
    return sorted({row.source for row in rows})


def has_any_entitlement(session: Session, username: str, course_id: str) -> bool:
    """Whether any entitlement row (in any state) links this user and course."""
    return (
        session.scalars(
            sa.select(Entitlement.id).where(
                Entitlement.username == username, Entitlement.course_id == course_id
            )
        ).first()
        is not None
    )
