"""Fulfilment: Stripe events and checkouts -> entitlements, decided from fresh Stripe objects.

Events are triggers, not truth. Whatever an event says, the handler re-fetches the object it is
about (session, subscription, invoice, charge, dispute) and decides from that, so events that
arrive late, twice or shuffled cannot move an entitlement backwards: a late
``customer.subscription.created`` re-reads a subscription Stripe already reports as canceled.

Every event id is recorded in the same transaction as the entitlement change it caused; the
unique constraint on the id makes processing exactly-once. After a change the access sync runs;
if the Hub is down the entitlement is still recorded, and the next sync heals membership.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

import stripe
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hub.access.status import EntitlementReason, EntitlementStatus
from hub.errors import HubAPIError, LearnHubError
from hub.settings import Settings
from hub.store import Database
from hub.store import repository as repo
from hub.store.repository import EntitlementUpdate

log = logging.getLogger("learnhub.billing")

#: The access sync: recompute desired membership and apply it to the Hub.
SyncAccess = Callable[[], Awaitable[None]]

#: Metadata keys LearnHub puts on sessions, payment intents and subscriptions.
META_USER = "learnhub_user"
META_COURSE = "learnhub_course"
META_PLAN = "learnhub_plan"

CHECKOUT_EVENTS = frozenset(
    {
        "checkout.session.completed",
        "checkout.session.async_payment_succeeded",
        "checkout.session.async_payment_failed",
        "checkout.session.expired",
    }
)
SUBSCRIPTION_EVENTS = frozenset(
    {
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
        "customer.subscription.paused",
        "customer.subscription.resumed",
    }
)
INVOICE_EVENTS = frozenset({"invoice.paid", "invoice.payment_succeeded", "invoice.payment_failed"})
CHARGE_EVENTS = frozenset({"charge.refunded", "charge.refund.updated"})
DISPUTE_EVENTS = frozenset(
    {
        "charge.dispute.created",
        "charge.dispute.updated",
        "charge.dispute.closed",
        "charge.dispute.funds_withdrawn",
        "charge.dispute.funds_reinstated",
    }
)
HANDLED_EVENTS = CHECKOUT_EVENTS | SUBSCRIPTION_EVENTS | INVOICE_EVENTS | CHARGE_EVENTS
HANDLED_EVENTS |= DISPUTE_EVENTS

#: Concurrent Stripe requests of one service (re-fetches of a batch of events run together).
#: Stripe answers in ~0.1-0.2 s over the internet: 32 in flight re-fetch ~200 objects/s.
STRIPE_THREADS = 32

#: Dispute states in which the money is (or may be) gone: access is suspended meanwhile.
OPEN_DISPUTE = frozenset({"needs_response", "under_review"})


class FulfilmentError(LearnHubError):
    """Stripe could not be asked, or answered something unusable; Stripe should retry."""


@dataclass(frozen=True)
class FulfilmentResult:
    """What one fulfilment or event did."""

    outcome: str
    detail: str = ""
    updates: list[EntitlementUpdate] = field(default_factory=list)
    changed: bool = False


def _id(value: Any) -> str | None:
    """An expandable field's id, whether Stripe sent the id or the expanded object."""
    if isinstance(value, dict):
        return str(value["id"]) if value.get("id") else None
    return str(value) if value else None


def _ts(value: Any) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(int(value), tz=UTC)


def _metadata(obj: dict[str, Any]) -> dict[str, str]:
    meta = obj.get("metadata") or {}
    return {str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else {}


def purchase_state(
    charge: dict[str, Any] | None, dispute: dict[str, Any] | None
) -> tuple[EntitlementStatus, str]:
    """(status, reason) of a paid one-off purchase, from its fresh charge and latest dispute."""
    if charge is not None and charge.get("refunded"):
        return EntitlementStatus.REVOKED, EntitlementReason.REFUNDED
    if dispute is not None:
        status = dispute.get("status")
        if status == "lost":
            return EntitlementStatus.REVOKED, EntitlementReason.DISPUTE_LOST
        if status in OPEN_DISPUTE:
            return EntitlementStatus.REVOKED, EntitlementReason.DISPUTE_OPEN
        if status == "won":
            return EntitlementStatus.ACTIVE, EntitlementReason.DISPUTE_WON
    return EntitlementStatus.ACTIVE, EntitlementReason.PAID


def subscription_state(sub: dict[str, Any]) -> tuple[EntitlementStatus, str, datetime | None]:
    """(status, reason, period_end) of a subscription entitlement from the fresh subscription.

    For ``past_due`` the period end is where the unpaid period *began* (the item's
    ``current_period_start``): Stripe has already moved the period on, but the learner paid only
    up to its start, and the grace period counts from there.
    """
    items = (sub.get("items") or {}).get("data") or []
    starts = [i["current_period_start"] for i in items if i.get("current_period_start")]
    ends = [i["current_period_end"] for i in items if i.get("current_period_end")]
    period_end = _ts(max(ends)) if ends else None
    status = sub.get("status")
    if status in ("active", "trialing"):
        reason = (
            EntitlementReason.CANCEL_AT_PERIOD_END
            if sub.get("cancel_at_period_end")
            else str(status)
        )
        return EntitlementStatus.ACTIVE, reason, period_end
    if status == "past_due":
        period = _ts(min(starts)) if starts else period_end
        return EntitlementStatus.PAST_DUE, EntitlementReason.PAYMENT_FAILED, period
    if status == "incomplete":
        return EntitlementStatus.PENDING, EntitlementReason.INCOMPLETE, period_end
    ended = _ts(sub.get("ended_at")) or period_end
    return EntitlementStatus.REVOKED, str(status), ended


class Billing:
    """Turns Stripe checkouts and events into entitlements, then syncs access."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        client: stripe.StripeClient,
        sync_access: SyncAccess,
    ) -> None:
        self.settings = settings
        self.db = db
        self.client = client
        self.sync_access = sync_access
        # Stripe calls block (the SDK's requests client) and take Stripe's round trip each, so
        # a batch of events re-fetches on threads of its own: they neither queue behind nor
        # hold up the database work on the default executor.
        self._stripe_threads = ThreadPoolExecutor(STRIPE_THREADS, thread_name_prefix="stripe")

    def close(self) -> None:
        """Let the Stripe threads finish and end (the service is stopping)."""
        self._stripe_threads.shutdown(wait=False, cancel_futures=True)

    # -- talking to Stripe (blocking calls go to a thread) ------------------------------------

    async def _call(self, what: str, func: Callable[..., Any], *args: Any) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        try:
            obj = await loop.run_in_executor(self._stripe_threads, partial(func, *args))
        except stripe.StripeError as exc:
            raise FulfilmentError(f"Stripe {what} failed: {exc.user_message or exc}") from exc
        result: dict[str, Any] = obj.to_dict()
        return result

    async def _session(self, session_id: str) -> dict[str, Any]:
        return await self._call(
            "retrieve checkout session",
            self.client.v1.checkout.sessions.retrieve,
            session_id,
            {"expand": ["payment_intent", "payment_intent.latest_charge"]},
        )

    async def _latest_dispute(self, charge_id: str) -> dict[str, Any] | None:
        listing = await self._call(
            "list disputes", self.client.v1.disputes.list, {"charge": charge_id, "limit": 10}
        )
        disputes = sorted(listing.get("data") or [], key=lambda d: int(d.get("created", 0)))
        return disputes[-1] if disputes else None

    # -- deciding -------------------------------------------------------------------------------

    def _plan_known(self, plan_id: str) -> bool:
        return any(p.id == plan_id for p in self.settings.payments.plans)

    async def _checkout_updates(self, session_id: str) -> FulfilmentResult:
        session = await self._session(session_id)
        meta = _metadata(session)
        user = session.get("client_reference_id") or meta.get(META_USER)
        if not user:
            return FulfilmentResult("ignored", "checkout session without a LearnHub user")
        if session.get("mode") == "subscription":
            sub_id = _id(session.get("subscription"))
            if sub_id is None:
                return FulfilmentResult("noop", "subscription not created yet")
            return await self._subscription_updates(
                sub_id, fallback_user=str(user), fallback_plan=meta.get(META_PLAN)
            )
        course_id = meta.get(META_COURSE)
        if not course_id:
            return FulfilmentResult("ignored", "checkout session without a LearnHub course")
        if session.get("status") != "complete":
            return FulfilmentResult("noop", f"checkout session is {session.get('status')}")
        intent = session.get("payment_intent")
        intent = intent if isinstance(intent, dict) else None
        if session.get("payment_status") in ("paid", "no_payment_required"):
            charge = intent.get("latest_charge") if intent else None
            charge = charge if isinstance(charge, dict) else None
            dispute = None
            if charge is not None and charge.get("disputed"):
                dispute = await self._latest_dispute(str(charge["id"]))
            status, reason = purchase_state(charge, dispute)
        elif intent is not None and intent.get("status") in ("requires_payment_method", "canceled"):
            status, reason = EntitlementStatus.REVOKED, EntitlementReason.PAYMENT_FAILED
        else:
            # Bank debits and the like settle days later: async_payment_succeeded/failed follow.
            status, reason = EntitlementStatus.PENDING, EntitlementReason.AWAITING_PAYMENT
        update = EntitlementUpdate(
            username=str(user),
            course_id=course_id,
            source="purchase",
            status=status,
            status_reason=reason,
            stripe_customer_id=_id(session.get("customer")),
            stripe_checkout_session_id=str(session["id"]),
            stripe_payment_intent_id=_id(intent) if intent else _id(session.get("payment_intent")),
        )
        return FulfilmentResult("applied", reason, [update])

    async def _subscription_updates(
        self,
        subscription_id: str,
        *,
        fallback_user: str | None = None,
        fallback_plan: str | None = None,
    ) -> FulfilmentResult:
        sub = await self._call(
            "retrieve subscription", self.client.v1.subscriptions.retrieve, subscription_id
        )
        meta = _metadata(sub)
        user = meta.get(META_USER) or fallback_user
        plan_id = meta.get(META_PLAN) or fallback_plan
        if not user or not plan_id:
            return FulfilmentResult("ignored", "subscription without LearnHub user and plan")
        if not self._plan_known(plan_id):
            # Still recorded: if the plan comes back in the settings, access follows.
            log.warning("subscription for an unknown plan", extra={"user": user, "plan": plan_id})
        status, reason, period_end = subscription_state(sub)
        update = EntitlementUpdate(
            username=user,
            plan_id=plan_id,
            source="subscription",
            status=status,
            status_reason=reason,
            period_end=period_end,
            stripe_customer_id=_id(sub.get("customer")),
            stripe_subscription_id=str(sub["id"]),
        )
        return FulfilmentResult("applied", reason, [update])

    async def _charge_updates(self, charge_id: str) -> FulfilmentResult:
        charge = await self._call("retrieve charge", self.client.v1.charges.retrieve, charge_id)
        intent_id = _id(charge.get("payment_intent"))
        if intent_id is None:
            return FulfilmentResult("ignored", "charge without a payment intent")
        session_id = await asyncio.to_thread(self._session_for_intent_db, intent_id)
        if session_id is None:
            listing = await self._call(
                "list checkout sessions",
                self.client.v1.checkout.sessions.list,
                {"payment_intent": intent_id, "limit": 1},
            )
            data = listing.get("data") or []
            session_id = str(data[0]["id"]) if data else None
        if session_id is None:
            # Subscription invoices and payments made outside LearnHub's checkout.
            return FulfilmentResult("ignored", "charge not paid through a LearnHub checkout")
        return await self._checkout_updates(session_id)

    def _session_for_intent_db(self, intent_id: str) -> str | None:
        with self.db.transaction() as session:
            return repo.session_id_for_payment_intent(session, intent_id)

    async def updates_for_event(self, event: dict[str, Any]) -> FulfilmentResult:
        """Decide, from fresh Stripe objects, what ``event`` means for entitlements."""
        event_type = str(event["type"])
        obj: dict[str, Any] = event["data"]["object"]
        if event_type in CHECKOUT_EVENTS:
            return await self._checkout_updates(str(obj["id"]))
        if event_type in SUBSCRIPTION_EVENTS:
            return await self._subscription_updates(str(obj["id"]))
        if event_type in INVOICE_EVENTS:
            invoice = await self._call(
                "retrieve invoice", self.client.v1.invoices.retrieve, str(obj["id"])
            )
            parent = invoice.get("parent") or {}
            details = parent.get("subscription_details") or {}
            sub_id = _id(details.get("subscription")) or _id(invoice.get("subscription"))
            if sub_id is None:
                return FulfilmentResult("ignored", "invoice not for a subscription")
            return await self._subscription_updates(sub_id)
        if event_type in CHARGE_EVENTS:
            charge_id = _id(obj.get("charge")) if obj.get("object") == "refund" else obj["id"]
            if charge_id is None:
                return FulfilmentResult("ignored", "refund without a charge")
            return await self._charge_updates(str(charge_id))
        if event_type in DISPUTE_EVENTS:
            dispute = await self._call(
                "retrieve dispute", self.client.v1.disputes.retrieve, str(obj["id"])
            )
            charge_id = _id(dispute.get("charge"))
            if charge_id is None:
                return FulfilmentResult("ignored", "dispute without a charge")
            return await self._charge_updates(charge_id)
        return FulfilmentResult("ignored", f"event type {event_type} is not used by LearnHub")

    # -- applying -----------------------------------------------------------------------------

    def _apply(self, updates: list[EntitlementUpdate]) -> bool:
        # Retried: the webhook's queue may create the same entitlement at the same moment (the
        # success page and the queue fulfil one checkout); the retry updates the queue's row.
        return self.db.transact_retrying(
            lambda session: any([repo.apply_update(session, update) for update in updates])
        )

    def _apply_with_event(
        self, event: dict[str, Any], result: FulfilmentResult
    ) -> tuple[str, bool]:
        for _attempt in range(3):
            try:
                with self.db.transaction() as session:
                    if repo.event_done(session, str(event["id"])):
                        return "duplicate", False
                    changed = any([repo.apply_update(session, u) for u in result.updates])
                    outcome = result.outcome
                    if outcome == "applied" and not changed:
                        outcome = "noop"
                    repo.record_event(session, event, outcome, None)
                    return outcome, changed
            except repo.EventAlreadyRecorded:
                return "duplicate", False
            except IntegrityError:
                # Another transaction committed first: the same event (the retry then sees it
                # as done) or another event creating the same entitlement (the retry updates
                # the row it created). Ours was rolled back whole, so retrying is safe.
                continue
        return "duplicate", False

    def apply_batch(
        self,
        decided: Sequence[tuple[dict[str, Any], FulfilmentResult]],
        failed: Sequence[tuple[dict[str, Any], str]] = (),
    ) -> dict[str, tuple[str, bool]]:
        """Apply queued events' updates and record their outcomes, all in one transaction.

        ``decided`` pairs each event with what its fresh Stripe objects mean; ``failed`` holds
        events whose re-fetch failed, with the error, which is recorded on the still queued
        event. Returns ``{event_id: (outcome, changed)}`` for the events of ``decided``;
        ``duplicate`` for one that was already processed elsewhere (it changes nothing).
        Blocking; raises ``IntegrityError`` if a concurrent writer kept conflicting.
        """
        ids = [str(event["id"]) for event, _ in [*decided, *failed]]

        def work(session: Session) -> dict[str, tuple[str, bool]]:
            mine = repo.claim_events(session, ids)
            results: dict[str, tuple[str, bool]] = {}
            recorded: dict[str, tuple[str, str | None]] = {}
            todo: list[tuple[str, FulfilmentResult]] = []
            for event, result in decided:
                event_id = str(event["id"])
                if event_id not in mine or event_id in recorded:
                    results.setdefault(event_id, ("duplicate", False))
                    continue
                todo.append((event_id, result))
                recorded[event_id] = (result.outcome, None)
            changes = iter(repo.apply_updates(session, [u for _, r in todo for u in r.updates]))
            for event_id, result in todo:
                changed = any([next(changes) for _ in result.updates])
                outcome = result.outcome
                if outcome == "applied" and not changed:
                    outcome = "noop"
                results[event_id] = (outcome, changed)
                recorded[event_id] = (outcome, None)
            for event, error in failed:
                event_id = str(event["id"])
                if event_id in mine and event_id not in recorded:
                    recorded[event_id] = (repo.QUEUED, error)
            repo.finish_events(session, recorded)
            return results

        # Retried when another transaction created the same entitlement first (the success
        # page): ours was rolled back whole, and the retry updates the row it created.
        return self.db.transact_retrying(work)

    def log_outcome(self, event: dict[str, Any], result: FulfilmentResult, outcome: str) -> None:
        """One structured line per event and entitlement: who, what, and what happened."""
        for update in result.updates:
            log.info(
                "stripe event processed",
                extra={
                    "event": event["id"],
                    "type": event.get("type"),
                    "user": update.username,
                    "course": update.course_id,
                    "plan": update.plan_id,
                    "status": update.status,
                    "outcome": outcome,
                },
            )
        if not result.updates:
            log.info(
                "stripe event processed",
                extra={"event": event["id"], "type": event.get("type"), "outcome": outcome},
            )

    def _record_error(self, event: dict[str, Any], error: str) -> None:
        try:
            with self.db.transaction() as session:
                if not repo.event_done(session, str(event["id"])):
                    repo.record_event(session, event, "error", error)
        except (IntegrityError, repo.EventAlreadyRecorded):
            pass  # a concurrent delivery recorded it: nothing left to say

    def _already_done(self, event_id: str) -> bool:
        with self.db.transaction() as session:
            return repo.event_done(session, event_id)

    async def sync(self, *who: str) -> None:
        """Run the access sync after ``who``'s entitlements changed; a failure is only logged."""
        try:
            await self.sync_access()
        except HubAPIError as exc:
            # The entitlement is committed; the periodic sync or reconcile heals membership.
            log.warning(
                "access sync failed; will heal on the next sync",
                extra={"user": ",".join(who), "outcome": "sync_failed", "error": str(exc)},
            )

    async def handle_event(self, event: dict[str, Any]) -> FulfilmentResult:
        """Process one verified event exactly once; returns the outcome (``duplicate`` too).

        The webhook hands events to :class:`hub.billing.events.EventQueue`; this is the path of
        the reconcile, one event at a time. Raises :class:`FulfilmentError` when Stripe cannot
        be asked; the event is then recorded as ``error`` and processed again when it is
        delivered again or the next reconcile lists it.
        """
        event_id = str(event["id"])
        if await asyncio.to_thread(self._already_done, event_id):
            return FulfilmentResult("duplicate")
        try:
            result = await self.updates_for_event(event)
        except FulfilmentError as exc:
            await asyncio.to_thread(self._record_error, event, str(exc))
            log.error(
                "stripe event failed",
                extra={"event": event_id, "type": event.get("type"), "outcome": "error"},
            )
            raise
        outcome, changed = await asyncio.to_thread(self._apply_with_event, event, result)
        self.log_outcome(event, result, outcome)
        if changed:
            await self.sync(result.updates[0].username)
        return FulfilmentResult(outcome, result.detail, result.updates, changed)

    async def fulfill_checkout(self, session_id: str) -> FulfilmentResult:
        """Idempotently grant what checkout ``session_id`` paid for (webhook and success page)."""
        result = await self._checkout_updates(session_id)
        changed = await asyncio.to_thread(self._apply, result.updates)
        for update in result.updates:
            log.info(
                "checkout fulfilled",
                extra={
                    "user": update.username,
                    "course": update.course_id,
                    "plan": update.plan_id,
                    "status": update.status,
                    "outcome": "changed" if changed else "unchanged",
                },
            )
        if changed:
            await self.sync(result.updates[0].username)
        return FulfilmentResult(result.outcome, result.detail, result.updates, changed)

    async def refresh_subscription(self, subscription_id: str) -> FulfilmentResult:
        """Re-read one subscription from Stripe and store its state (reconciliation)."""
        result = await self._subscription_updates(subscription_id)
        changed = await asyncio.to_thread(self._apply, result.updates)
        return FulfilmentResult(result.outcome, result.detail, result.updates, changed)
