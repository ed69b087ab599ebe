"""Reads and writes of entitlements and Stripe events, inside a caller's transaction."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from hub.access.status import ACCESS_STATUSES, EntitlementReason, EntitlementStatus
from hub.store.models import CheckoutSession, Entitlement, Payment, StripeEvent, utcnow

#: ``status_reason`` of an entitlement an operator revoked (see EntitlementReason).
OPERATOR_REVOKED = EntitlementReason.OPERATOR_REVOKED


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


def _key(update: EntitlementUpdate) -> tuple[str, str]:
    if update.stripe_subscription_id is not None:
        return "stripe_subscription_id", update.stripe_subscription_id
    if update.stripe_checkout_session_id is not None:
        return "stripe_checkout_session_id", update.stripe_checkout_session_id
    raise ValueError("an entitlement update needs a subscription or checkout session id")


def apply_update(session: Session, update: EntitlementUpdate) -> bool:
    """Make the matching entitlement look like ``update``; return whether anything changed."""
    return apply_updates(session, [update])[0]


def apply_updates(session: Session, updates: Sequence[EntitlementUpdate]) -> list[bool]:
    """:func:`apply_update` for each of ``updates`` in order, with one query and one flush.

    Later updates of the same entitlement see the earlier ones. Returns what each changed.
    """
    keys = [_key(update) for update in updates]
    rows: dict[tuple[str, str], Entitlement] = {}
    for column in ("stripe_subscription_id", "stripe_checkout_session_id"):
        wanted = {value for name, value in keys if name == column}
        if wanted:
            attribute = getattr(Entitlement, column)
            for found in session.scalars(sa.select(Entitlement).where(attribute.in_(wanted))):
                rows[(column, getattr(found, column))] = found
    changes: list[bool] = []
    for key, update in zip(keys, updates, strict=True):
        values: dict[str, Any] = {f.name: getattr(update, f.name) for f in fields(update)}
        row = rows.get(key)
        if row is None:
            rows[key] = Entitlement(**values)
            session.add(rows[key])
            changes.append(True)
            continue
        changed = False
        held = row.status == EntitlementStatus.REVOKED and row.status_reason == OPERATOR_REVOKED
        for name, value in values.items():
            # A later update never forgets a Stripe id an earlier one learned.
            if value is None and name.startswith("stripe_"):
                continue
            if held and name in ("status", "status_reason", "period_end"):
                continue
            if getattr(row, name) != value:
                setattr(row, name, value)
                changed = True
        if changed:
            row.updated_at = utcnow()
        changes.append(changed)
    session.flush()
    return changes


def subscription_owner(session: Session, subscription_id: str) -> tuple[str, str] | None:
    """(username, plan id) of the entitlement a LearnHub checkout created for a subscription."""
    row = session.execute(
        sa.select(Entitlement.username, Entitlement.plan_id).where(
            Entitlement.stripe_subscription_id == subscription_id,
            Entitlement.plan_id.is_not(None),
        )
    ).first()
    return None if row is None or row[1] is None else (str(row[0]), str(row[1]))


@dataclass(frozen=True)
class PaymentRecord:
    """Money one verified LearnHub checkout session or subscription invoice brought in."""

    stripe_id: str
    kind: str
    username: str
    currency: str
    amount: int
    amount_refunded: int = 0
    course_id: str | None = None
    plan_id: str | None = None
    paid_at: datetime | None = None


def record_payments(session: Session, records: Sequence[PaymentRecord]) -> None:
    """Insert or update ledger rows, keyed by Stripe id, from freshly re-fetched objects."""
    if not records:
        return
    wanted = {r.stripe_id for r in records}
    rows = {
        row.stripe_id: row
        for row in session.scalars(sa.select(Payment).where(Payment.stripe_id.in_(wanted)))
    }
    for record in records:
        values: dict[str, Any] = {f.name: getattr(record, f.name) for f in fields(record)}
        if values["paid_at"] is None:
            values["paid_at"] = utcnow()
        row = rows.get(record.stripe_id)
        if row is None:
            rows[record.stripe_id] = Payment(**values)
            session.add(rows[record.stripe_id])
            continue
        values.pop("paid_at")
        if any(getattr(row, name) != value for name, value in values.items()):
            for name, value in values.items():
                setattr(row, name, value)
            row.updated_at = utcnow()
    session.flush()


def payments(session: Session) -> Sequence[Payment]:
    """The whole revenue ledger, oldest first."""
    return session.scalars(sa.select(Payment).order_by(Payment.id)).all()


def course_payments(session: Session, course_id: str) -> Sequence[Payment]:
    """The ledger rows of one course, oldest first."""
    query = sa.select(Payment).where(Payment.course_id == course_id).order_by(Payment.id)
    return session.scalars(query).all()


def course_entitlements(
    session: Session, course_id: str, plan_ids: Sequence[str]
) -> Sequence[Entitlement]:
    """Entitlements to one course: of the course itself or of a plan in ``plan_ids`` (the
    plans that include it), oldest first."""
    named = Entitlement.course_id == course_id
    if plan_ids:
        named = sa.or_(named, Entitlement.plan_id.in_(plan_ids))
    return session.scalars(sa.select(Entitlement).where(named).order_by(Entitlement.id)).all()


def entitlements(session: Session, username: str | None = None) -> Sequence[Entitlement]:
    """All entitlements, or those of one user."""
    query = sa.select(Entitlement).order_by(Entitlement.id)
    if username is not None:
        query = query.where(Entitlement.username == username)
    return session.scalars(query).all()


def access_rows(
    session: Session, usernames: Collection[str] | None = None
) -> Sequence[sa.Row[str, str | None, str | None, str, datetime | None]]:
    """The entitlements that may give access (``active``, ``past_due``), as light rows;
    only ``usernames``' when given.

    Only the columns :func:`hub.entitlements.desired_membership` reads: the access sync runs
    after every batch of webhook events, and building ORM objects for every row would cost
    far more than the rows themselves.
    """
    query = sa.select(
        Entitlement.username,
        Entitlement.course_id,
        Entitlement.plan_id,
        Entitlement.status,
        Entitlement.period_end,
    ).where(Entitlement.status.in_(sorted(ACCESS_STATUSES)))
    if usernames is not None:
        query = query.where(Entitlement.username.in_(sorted(usernames)))
    return session.execute(query.order_by(Entitlement.id)).all()


def session_id_for_payment_intent(session: Session, payment_intent_id: str) -> str | None:
    """The checkout session id of the purchase paid with this payment intent, if known."""
    return session.scalars(
        sa.select(Entitlement.stripe_checkout_session_id).where(
            Entitlement.stripe_payment_intent_id == payment_intent_id,
            Entitlement.stripe_checkout_session_id.is_not(None),
        )
    ).first()


#: Outcome of an event that is recorded (acknowledged to Stripe) but not processed yet.
QUEUED = "queued"
#: Outcomes the event queue may still process: waiting, or given up on and delivered again.
PROCESSABLE = (QUEUED, "error")


def event_done(session: Session, event_id: str) -> bool:
    """Whether this Stripe event was processed, or is queued for processing.

    Only an ``error`` outcome may be processed again by another path.
    """
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
        # Committed by a concurrent delivery after this transaction's first look, or queued:
        # then the event queue owns it.
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


def _events_table() -> sa.Table:
    """``stripe_events`` for Core statements (bulk inserts and updates skip the ORM's cost)."""
    table = StripeEvent.__table__
    assert isinstance(table, sa.Table)
    return table


def accept_events(
    session: Session, events: Sequence[dict[str, Any]], handled: Callable[[str], bool]
) -> list[str]:
    """Record verified events before Stripe is told they arrived; one status per event.

    ``queued`` (new, or an ``error`` delivered again: the event queue processes it),
    ``ignored`` (a type LearnHub does not use: recorded as done at once) or ``duplicate``
    (recorded already, also when the same id comes twice in ``events``). The unique event id
    still makes concurrent acceptances of one event fail at commit, never record it twice.
    """
    ids = [str(event["id"]) for event in events]
    table = _events_table()
    known: dict[str, str] = dict(
        session.execute(
            sa.select(table.c.event_id, table.c.outcome).where(table.c.event_id.in_(set(ids)))
        ).all()
    )
    now = utcnow()
    statuses: list[str] = []
    new_rows: list[dict[str, Any]] = []
    requeue: list[str] = []
    for event_id, event in zip(ids, events, strict=True):
        outcome = known.get(event_id)
        if outcome == "error":
            requeue.append(event_id)
            known[event_id] = QUEUED
            statuses.append(QUEUED)
        elif outcome is not None:
            statuses.append("duplicate")
        else:
            outcome = QUEUED if handled(str(event.get("type", ""))) else "ignored"
            known[event_id] = outcome
            new_rows.append(
                {
                    "event_id": event_id,
                    "type": str(event.get("type", "")),
                    "created": datetime.fromtimestamp(int(event.get("created", 0)), tz=now.tzinfo),
                    "payload": event,
                    "received_at": now,
                    "outcome": outcome,
                    "error": None,
                }
            )
            statuses.append(outcome)
    if new_rows:
        session.execute(sa.insert(table), new_rows)
    if requeue:
        session.execute(
            sa.update(table)
            .where(table.c.event_id.in_(requeue), table.c.outcome == "error")
            .values(outcome=QUEUED, received_at=now)
        )
    return statuses


def claim_events(session: Session, event_ids: Sequence[str]) -> set[str]:
    """Lock the events of ``event_ids`` that are still to be processed; return their ids.

    The first statement writes, so on SQLite this transaction holds the write lock from here
    on, and on PostgreSQL the rows stay locked until commit: nobody else can process them in
    between, and what this transaction then records happens exactly once.
    """
    if not event_ids:
        return set()
    table = _events_table()
    ids = set(event_ids)
    session.execute(
        sa.update(table)
        .where(table.c.event_id.in_(ids), table.c.outcome.in_(PROCESSABLE))
        .values(error=None)
    )
    return set(
        session.scalars(
            sa.select(table.c.event_id).where(
                table.c.event_id.in_(ids), table.c.outcome.in_(PROCESSABLE)
            )
        )
    )


def finish_events(session: Session, outcomes: dict[str, tuple[str, str | None]]) -> None:
    """Set the outcome (and error text) of claimed events: ``{event_id: (outcome, error)}``."""
    if not outcomes:
        return
    table = _events_table()
    session.execute(
        sa.update(table)
        .where(table.c.event_id == sa.bindparam("eid"))
        .values(outcome=sa.bindparam("new_outcome"), error=sa.bindparam("new_error")),
        [{"eid": k, "new_outcome": o, "new_error": e} for k, (o, e) in outcomes.items()],
    )


def queued_events(session: Session) -> list[dict[str, Any]]:
    """Payloads of the events recorded but not processed yet, oldest first."""
    table = _events_table()
    return [
        dict(payload)
        for payload in session.scalars(
            sa.select(table.c.payload).where(table.c.outcome == QUEUED).order_by(table.c.id)
        )
    ]


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
    price_id: str | None = None,
    amount: int | None = None,
    currency: str | None = None,
) -> None:
    """Insert or update our copy of a Checkout Session (with the price LearnHub asked for)."""
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
                price_id=price_id,
                amount=amount,
                currency=currency,
            )
        )
    elif row.status != status:
        row.status = status
        row.updated_at = utcnow()
    session.flush()


def checkout_session(session: Session, session_id: str) -> CheckoutSession | None:
    """LearnHub's record of a Checkout Session it created, or None (not ours)."""
    return session.scalars(
        sa.select(CheckoutSession).where(CheckoutSession.session_id == session_id)
    ).one_or_none()


def checkout_sessions(session: Session, session_ids: Collection[str]) -> list[CheckoutSession]:
    """LearnHub's records of those of ``session_ids`` it created (one query for a batch)."""
    if not session_ids:
        return []
    return list(
        session.scalars(
            sa.select(CheckoutSession).where(CheckoutSession.session_id.in_(set(session_ids)))
        )
    )


def active_subscription_ids(session: Session) -> list[str]:
    """Subscriptions whose entitlement is not revoked (for reconciliation)."""
    return list(
        session.scalars(
            sa.select(Entitlement.stripe_subscription_id).where(
                Entitlement.stripe_subscription_id.is_not(None),
                Entitlement.status != EntitlementStatus.REVOKED,
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
    status = EntitlementStatus.ACTIVE if active else EntitlementStatus.REVOKED
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

    With ``reason`` :data:`OPERATOR_REVOKED` the rows are held revoked: a later Stripe event
    about the same checkout does not give access back (see :func:`apply_updates`).
    Returns the sources that were withdrawn. Membership plans are not touched: they are ended
    by cancelling the subscription, so Stripe and LearnHub never disagree about a plan.
    """
    rows = session.scalars(
        sa.select(Entitlement).where(
            Entitlement.username == username,
            Entitlement.course_id == course_id,
            Entitlement.status != EntitlementStatus.REVOKED,
        )
    ).all()
    for row in rows:
        row.status = EntitlementStatus.REVOKED
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
