"""Fulfilment: Stripe events and checkouts -> entitlements, decided from fresh Stripe objects.

Events are triggers, not truth. Whatever an event says, the handler re-fetches the object it is
about (session, subscription, invoice, charge, dispute) and decides from that, so events that
arrive late, twice or shuffled cannot move an entitlement backwards: a late
``customer.subscription.created`` re-reads a subscription Stripe already reports as canceled.

Every event id is recorded in the same transaction as the entitlement change it caused; the
unique constraint on the id makes processing exactly-once. After a change the access sync runs;
if the Hub is down the entitlement is still recorded, and the next sync heals membership.

Money decides, not metadata (see ``docs/how-to/payments.md``): a checkout grants only when
LearnHub recorded the session for that user at checkout creation, and its re-fetched line item
is the price, amount and currency LearnHub asked for; a subscription grants only through such a
checkout. Metadata is never read to decide who gets what. Revenue is recorded in the
``payments`` ledger from the same verified, re-fetched objects. An object Stripe does not have
(404 ``resource_missing``) is a permanent failure, recorded once and never retried.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable
from urllib.parse import quote

import stripe
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hub.access.status import EntitlementReason, EntitlementStatus
from hub.billing.client import StripeAPI
from hub.errors import HubAPIError, LearnHubError
from hub.settings import PlanSettings, Settings
from hub.store import CheckoutSession, Database
from hub.store import repository as repo
from hub.store.repository import EntitlementUpdate, PaymentRecord

log = logging.getLogger("learnhub.billing")

#: The access sync: recompute desired membership and apply it to the Hub.
SyncAccess = Callable[[], Awaitable[None]]


@runtime_checkable
class AddingSync(Protocol):
    """An access sync that can also just add a few learners to their groups
    (:class:`hub.access.hub_groups.AccessSync`)."""

    async def add_granted(self, users: Collection[str]) -> None:
        """Add ``users`` to the groups their entitlements give them; remove no one."""


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

#: Dispute states in which the money is (or may be) gone: access is suspended meanwhile.
OPEN_DISPUTE = frozenset({"needs_response", "under_review"})


class FulfilmentError(LearnHubError):
    """Stripe could not be asked, or answered something unusable; Stripe should retry."""


class StripeObjectMissing(FulfilmentError):
    """Stripe answered 404 ``resource_missing``: asking again will not make the object appear.

    The event is recorded once as ``failed`` (permanent) instead of being retried for days.
    """


@dataclass(frozen=True)
class ExpectedPrice:
    """What LearnHub asked Stripe to charge for one checkout (recorded at creation)."""

    username: str
    course_id: str | None
    plan_id: str | None
    mode: str
    price_id: str | None
    amount: int | None
    currency: str | None


@dataclass(frozen=True)
class FulfilmentResult:
    """What one fulfilment or event did."""

    outcome: str
    detail: str = ""
    updates: list[EntitlementUpdate] = field(default_factory=list)
    changed: bool = False
    #: Revenue ledger rows, from the same verified, re-fetched objects.
    payments: list[PaymentRecord] = field(default_factory=list)


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


def line_item_problem(session: dict[str, Any], expected: ExpectedPrice) -> str | None:
    """Why the re-fetched ``session`` (line items expanded) is not what LearnHub sold, or None.

    One line item, quantity one, the configured Stripe price (when one is configured) at the
    recorded amount and currency. Discounts lower the total, never the line item's price.
    """
    listing = session.get("line_items")
    items = listing.get("data") if isinstance(listing, dict) else None
    if not isinstance(items, list):
        return "line items missing from the re-fetched checkout session"
    problem, item, price = _single_item(
        items, "line items; LearnHub sells one item per checkout", expected.price_id
    )
    if problem:
        return problem
    if expected.amount is not None:
        currency = str(expected.currency or "").lower()
        paid = (price.get("unit_amount"), str(price.get("currency") or "").lower())
        if paid != (expected.amount, currency):
            return f"price {paid[0]} {paid[1]} is not {expected.amount} {currency}"
        if int(item.get("amount_subtotal") or 0) != expected.amount:
            return f"line item subtotal {item.get('amount_subtotal')} is not {expected.amount}"
        if str(session.get("currency") or "").lower() != currency:
            return f"session currency {session.get('currency')} is not {currency}"
    return None


def _single_item(
    items: list[Any], count_words: str, price_id: str | None
) -> tuple[str | None, dict[str, Any], dict[str, Any]]:
    """``(problem, item, price)`` for a list that must hold one item, quantity one, at the
    configured ``price_id`` (when one is configured); ``problem`` is None when it does."""
    if len(items) != 1:
        return f"{len(items)} {count_words}", {}, {}
    item = items[0]
    price = item.get("price") if isinstance(item.get("price"), dict) else {}
    if int(item.get("quantity") or 0) != 1:
        return f"quantity {item.get('quantity')}; LearnHub sells one", item, price
    if price_id and price.get("id") != price_id:
        return f"price {price.get('id')} is not the configured {price_id}", item, price
    return None, item, price


def plan_price_problem(sub: dict[str, Any], plan: PlanSettings) -> str | None:
    """Why the re-fetched subscription does not sell ``plan`` at its price, or None."""
    items = (sub.get("items") or {}).get("data") or []
    problem, _, price = _single_item(
        items, "subscription items; a LearnHub plan has one", plan.stripe_price_id
    )
    if problem:
        return problem
    interval = (price.get("recurring") or {}).get("interval")
    paid = (price.get("unit_amount"), str(price.get("currency") or "").lower(), interval)
    wanted = (plan.amount, plan.currency.lower(), plan.interval)
    if paid != wanted:
        return f"price {paid} is not the plan's {wanted}"
    return None


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
        client: StripeAPI,
        sync_access: SyncAccess,
    ) -> None:
        self.settings = settings
        self.db = db
        self.client = client
        self.sync_access = sync_access

    async def aclose(self) -> None:
        """Close the connections to Stripe (the service is stopping)."""
        await self.client.aclose()

    # -- talking to Stripe ----------------------------------------------------------------------

    async def _get(
        self, what: str, path: str, object_id: str | None = None, **params: Any
    ) -> dict[str, Any]:
        """``GET /v1/<path>[/<object_id>]`` from Stripe, as a plain dict of its JSON.

        The stripe library's raw request (its authentication, retries and errors) without
        turning the answer into StripeObjects and back: that round trip was a third of each
        re-fetch's CPU in the service (py-spy, benchmarks/edge.py), and only plain values are
        read from it. Awaited on the event loop (aiohttp, :mod:`hub.billing.client`): a batch's
        re-fetches run together, at most :data:`~hub.billing.client.POOL_SIZE` at once.
        """
        url = f"/v1/{path}" + (f"/{quote(object_id, safe='')}" if object_id is not None else "")
        try:
            response = await self.client.raw_request_async("get", url, **params)
        except stripe.InvalidRequestError as exc:
            if exc.http_status == 404 and exc.code == "resource_missing":
                raise StripeObjectMissing(
                    f"Stripe {what}: no such object ({exc.user_message or exc})"
                ) from exc
            raise FulfilmentError(f"Stripe {what} failed: {exc.user_message or exc}") from exc
        except stripe.StripeError as exc:
            raise FulfilmentError(f"Stripe {what} failed: {exc.user_message or exc}") from exc
        data = response.data
        if not isinstance(data, dict):
            raise FulfilmentError(f"Stripe {what}: the answer is not a JSON object")
        return data

    async def _session(self, session_id: str) -> dict[str, Any]:
        # line_items: what was actually sold (price id, amount, currency) decides, not metadata.
        return await self._get(
            "retrieve checkout session",
            "checkout/sessions",
            session_id,
            expand=["line_items", "payment_intent", "payment_intent.latest_charge", "invoice"],
        )

    async def _latest_dispute(self, charge_id: str) -> dict[str, Any] | None:
        listing = await self._get("list disputes", "disputes", charge=charge_id, limit=10)
        disputes = sorted(listing.get("data") or [], key=lambda d: int(d.get("created", 0)))
        return disputes[-1] if disputes else None

    # -- deciding -------------------------------------------------------------------------------

    def _plan(self, plan_id: str) -> PlanSettings | None:
        return next((p for p in self.settings.payments.plans if p.id == plan_id), None)

    def _expected(self, row: CheckoutSession) -> ExpectedPrice:
        """What LearnHub recorded it asked for in checkout session ``row``."""
        price_id = row.price_id
        if row.amount is None and row.course_id is not None:
            # Recorded before 0009_payments: only the configured price id can be checked.
            price_id = self.settings.payments.course_price_ids.get(row.course_id) or None
        return ExpectedPrice(
            username=row.username,
            course_id=row.course_id,
            plan_id=row.plan_id,
            mode=row.mode,
            price_id=price_id,
            amount=row.amount,
            currency=row.currency,
        )

    def _expected_db(self, session_id: str) -> ExpectedPrice | None:
        with self.db.transaction() as session:
            row = repo.checkout_session(session, session_id)
            return None if row is None else self._expected(row)

    def _recorded_db(self, session_ids: Collection[str]) -> dict[str, ExpectedPrice]:
        with self.db.transaction() as session:
            rows = repo.checkout_sessions(session, session_ids)
            return {row.session_id: self._expected(row) for row in rows}

    def _subscription_owner_db(self, subscription_id: str) -> tuple[str, str] | None:
        with self.db.transaction() as session:
            return repo.subscription_owner(session, subscription_id)

    @staticmethod
    def _refused(session_id: str, detail: str) -> FulfilmentResult:
        log.warning(
            "checkout session refused",
            extra={"session": session_id, "reason": detail, "outcome": "ignored"},
        )
        return FulfilmentResult("ignored", detail)

    async def _checkout_updates(
        self, session_id: str, recorded: Mapping[str, ExpectedPrice] | None = None
    ) -> FulfilmentResult:
        session = await self._session(session_id)
        expected = (recorded or {}).get(session_id)
        if expected is None:
            # Not read with its batch (or not LearnHub's): asked on its own.
            expected = await asyncio.to_thread(self._expected_db, session_id)
        if expected is None:
            # Another integration on the same Stripe account, a payment link, or a forgery:
            # whatever its metadata says, LearnHub did not sell it.
            return self._refused(session_id, "checkout session not created by LearnHub")
        user = expected.username
        if session.get("client_reference_id") != user:
            return self._refused(session_id, "checkout session of another user")
        meta = _metadata(session)
        if (
            meta.get(META_COURSE, expected.course_id) != expected.course_id
            or meta.get(META_PLAN, expected.plan_id) != expected.plan_id
        ):
            return self._refused(session_id, "checkout session metadata does not match")
        if session.get("mode") != expected.mode:
            return self._refused(session_id, f"checkout session mode {session.get('mode')}")
        if expected.mode == "subscription":
            sub_id = _id(session.get("subscription"))
            if sub_id is None or expected.plan_id is None:
                return FulfilmentResult("noop", "subscription not created yet")
            result = await self._subscription_updates(sub_id, owner=(user, expected.plan_id))
            invoice = session.get("invoice")
            if result.updates and isinstance(invoice, dict):
                # The first invoice is paid before the subscription is known to be LearnHub's;
                # its invoice.paid event was refused, so it enters the ledger here.
                result.payments.extend(self._invoice_payments(invoice, user, expected.plan_id))
            return result
        course_id = expected.course_id
        if course_id is None:
            return self._refused(session_id, "checkout session without a LearnHub course")
        if session.get("status") != "complete":
            return FulfilmentResult("noop", f"checkout session is {session.get('status')}")
        problem = line_item_problem(session, expected)
        if problem is not None:
            return self._refused(session_id, f"not what LearnHub sold: {problem}")
        intent = session.get("payment_intent")
        intent = intent if isinstance(intent, dict) else None
        payments: list[PaymentRecord] = []
        if session.get("payment_status") in ("paid", "no_payment_required"):
            charge = intent.get("latest_charge") if intent else None
            charge = charge if isinstance(charge, dict) else None
            dispute = None
            if charge is not None and charge.get("disputed"):
                dispute = await self._latest_dispute(str(charge["id"]))
            status, reason = purchase_state(charge, dispute)
            amount = int(session.get("amount_total") or 0)
            refunded = int(charge.get("amount_refunded") or 0) if charge else 0
            if dispute is not None and dispute.get("status") == "lost":
                refunded = amount
            payments.append(
                PaymentRecord(
                    stripe_id=str(session["id"]),
                    kind="purchase",
                    username=user,
                    course_id=course_id,
                    currency=str(session.get("currency") or expected.currency or "usd").lower(),
                    amount=amount,
                    amount_refunded=min(refunded, amount),
                    paid_at=_ts(charge.get("created")) if charge else None,
                )
            )
        elif intent is not None and intent.get("status") in ("requires_payment_method", "canceled"):
            status, reason = EntitlementStatus.REVOKED, EntitlementReason.PAYMENT_FAILED
        else:
            # Bank debits and the like settle days later: async_payment_succeeded/failed follow.
            status, reason = EntitlementStatus.PENDING, EntitlementReason.AWAITING_PAYMENT
        update = EntitlementUpdate(
            username=user,
            course_id=course_id,
            source="purchase",
            status=status,
            status_reason=reason,
            stripe_customer_id=_id(session.get("customer")),
            stripe_checkout_session_id=str(session["id"]),
            stripe_payment_intent_id=_id(intent) if intent else _id(session.get("payment_intent")),
        )
        return FulfilmentResult("applied", reason, [update], payments=payments)

    @staticmethod
    def _invoice_payments(invoice: dict[str, Any], user: str, plan_id: str) -> list[PaymentRecord]:
        if invoice.get("status") != "paid" or not invoice.get("id"):
            return []
        return [
            PaymentRecord(
                stripe_id=str(invoice["id"]),
                kind="invoice",
                username=user,
                plan_id=plan_id,
                currency=str(invoice.get("currency") or "usd").lower(),
                amount=int(invoice.get("amount_paid") or 0),
                paid_at=_ts(invoice.get("created")),
            )
        ]

    async def _subscription_checkout_owner(self, subscription_id: str) -> tuple[str, str] | None:
        """(user, plan) of the recorded LearnHub checkout that started this subscription."""
        listing = await self._get(
            "list checkout sessions", "checkout/sessions", subscription=subscription_id, limit=1
        )
        data = listing.get("data") or []
        if not data:
            return None
        expected = await asyncio.to_thread(self._expected_db, str(data[0]["id"]))
        if (
            expected is None
            or expected.mode != "subscription"
            or expected.plan_id is None
            or data[0].get("client_reference_id") != expected.username
        ):
            return None
        return expected.username, expected.plan_id

    async def _subscription_updates(
        self, subscription_id: str, *, owner: tuple[str, str] | None = None
    ) -> FulfilmentResult:
        """The entitlement of a subscription LearnHub sold: ``owner`` (user, plan) comes from
        the recorded checkout that created it, or from the entitlement that checkout made."""
        sub = await self._get("retrieve subscription", "subscriptions", subscription_id)
        if owner is None:
            owner = await asyncio.to_thread(self._subscription_owner_db, subscription_id)
        if owner is None:
            owner = await self._subscription_checkout_owner(subscription_id)
        if owner is None:
            # Metadata alone never vouches for a subscription: only a checkout LearnHub
            # recorded does.
            return FulfilmentResult("ignored", "subscription not sold by a LearnHub checkout")
        user, plan_id = owner
        plan = self._plan(plan_id)
        if plan is None:
            # Still recorded: if the plan comes back in the settings, access follows.
            log.warning("subscription for an unknown plan", extra={"user": user, "plan": plan_id})
        else:
            problem = plan_price_problem(sub, plan)
            if problem is not None:
                log.warning(
                    "subscription refused",
                    extra={"user": user, "plan": plan_id, "reason": problem, "outcome": "ignored"},
                )
                return FulfilmentResult("ignored", f"not what LearnHub sold: {problem}")
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
        charge = await self._get("retrieve charge", "charges", charge_id)
        intent_id = _id(charge.get("payment_intent"))
        if intent_id is None:
            return FulfilmentResult("ignored", "charge without a payment intent")
        session_id = await asyncio.to_thread(self._session_for_intent_db, intent_id)
        if session_id is None:
            listing = await self._get(
                "list checkout sessions", "checkout/sessions", payment_intent=intent_id, limit=1
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

    async def updates_for_events(
        self, events: Sequence[dict[str, Any]]
    ) -> list[FulfilmentResult | BaseException]:
        """:meth:`updates_for_event` for a batch, concurrently; an exception in its event's place.

        LearnHub's records of the batch's checkout sessions are read in one query, not one per
        event (a tenth of the service's busy time under a burst, py-spy).
        """
        ids = {
            str(event["data"]["object"]["id"])
            for event in events
            if event["type"] in CHECKOUT_EVENTS and event["data"]["object"].get("id")
        }
        recorded = await asyncio.to_thread(self._recorded_db, ids) if ids else {}
        return await asyncio.gather(
            *(self.updates_for_event(event, recorded=recorded) for event in events),
            return_exceptions=True,
        )

    async def updates_for_event(
        self, event: dict[str, Any], *, recorded: Mapping[str, ExpectedPrice] | None = None
    ) -> FulfilmentResult:
        """Decide, from fresh Stripe objects, what ``event`` means for entitlements.

        ``recorded``: LearnHub's records of checkout sessions already read for a batch
        (:meth:`updates_for_events`); a session not in it is looked up on its own.
        """
        event_type = str(event["type"])
        obj: dict[str, Any] = event["data"]["object"]
        if event_type in CHECKOUT_EVENTS:
            return await self._checkout_updates(str(obj["id"]), recorded)
        if event_type in SUBSCRIPTION_EVENTS:
            return await self._subscription_updates(str(obj["id"]))
        if event_type in INVOICE_EVENTS:
            invoice = await self._get("retrieve invoice", "invoices", str(obj["id"]))
            parent = invoice.get("parent") or {}
            details = parent.get("subscription_details") or {}
            sub_id = _id(details.get("subscription")) or _id(invoice.get("subscription"))
            if sub_id is None:
                return FulfilmentResult("ignored", "invoice not for a subscription")
            result = await self._subscription_updates(sub_id)
            for update in result.updates:
                assert update.plan_id is not None
                result.payments.extend(
                    self._invoice_payments(invoice, update.username, update.plan_id)
                )
            return result
        if event_type in CHARGE_EVENTS:
            charge_id = _id(obj.get("charge")) if obj.get("object") == "refund" else obj["id"]
            if charge_id is None:
                return FulfilmentResult("ignored", "refund without a charge")
            return await self._charge_updates(str(charge_id))
        if event_type in DISPUTE_EVENTS:
            dispute = await self._get("retrieve dispute", "disputes", str(obj["id"]))
            charge_id = _id(dispute.get("charge"))
            if charge_id is None:
                return FulfilmentResult("ignored", "dispute without a charge")
            return await self._charge_updates(charge_id)
        return FulfilmentResult("ignored", f"event type {event_type} is not used by LearnHub")

    # -- applying -----------------------------------------------------------------------------

    def _apply(self, updates: list[EntitlementUpdate], payments: list[PaymentRecord]) -> bool:
        # Retried: the webhook's queue may create the same entitlement at the same moment (the
        # success page and the queue fulfil one checkout); the retry updates the queue's row.
        def work(session: Session) -> bool:
            changed = any([repo.apply_update(session, update) for update in updates])
            repo.record_payments(session, payments)
            return changed

        return self.db.transact_retrying(work)

    def _apply_with_event(
        self, event: dict[str, Any], result: FulfilmentResult
    ) -> tuple[str, bool]:
        for _attempt in range(3):
            try:
                with self.db.transaction() as session:
                    if repo.event_done(session, str(event["id"])):
                        return "duplicate", False
                    changed = any([repo.apply_update(session, u) for u in result.updates])
                    repo.record_payments(session, result.payments)
                    outcome = result.outcome
                    if outcome == "applied" and not changed:
                        outcome = "noop"
                    failure = result.detail if outcome == "failed" else None
                    repo.record_event(session, event, outcome, failure)
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
            repo.record_payments(session, [p for _, r in todo for p in r.payments])
            for event_id, result in todo:
                changed = any([next(changes) for _ in result.updates])
                outcome = result.outcome
                if outcome == "applied" and not changed:
                    outcome = "noop"
                results[event_id] = (outcome, changed)
                # A permanent failure keeps its reason; it is never tried again.
                recorded[event_id] = (outcome, result.detail if outcome == "failed" else None)
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

    async def sync(self, *who: str, only_adds: bool = False) -> None:
        """Run the access sync after ``who``'s entitlements changed; a failure is only logged.

        ``only_adds``: every change can only add access
        (:func:`hub.entitlements.only_adds_access`), so, when the sync can, only ``who`` are
        added to their groups, without reading every group and entitlement.
        """
        try:
            if only_adds and isinstance(self.sync_access, AddingSync):
                await self.sync_access.add_granted(who)
            else:
                await self.sync_access()
        except HubAPIError as exc:
            # The entitlement is committed. A failed addition is retried with back-off
            # (AccessSync.add_granted); anything else heals at the next sync or reconcile.
            log.warning(
                "access sync failed; will heal on a retry or the next sync",
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
        except StripeObjectMissing as exc:
            result = FulfilmentResult("failed", str(exc))
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
        changed = await asyncio.to_thread(self._apply, result.updates, result.payments)
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
        changed = await asyncio.to_thread(self._apply, result.updates, result.payments)
        return FulfilmentResult(result.outcome, result.detail, result.updates, changed)
