"""What Stripe does when a learner pays, renews, is refunded or disputes, on an object store.

The offline demo provider and the tests both use it: it changes objects in Stripe's real shapes
(API version of the installed ``stripe`` library: subscription periods on the items, invoice
subscription under ``parent.subscription_details``) and returns the events Stripe would send.
Events are also stored, so ``GET /v1/events`` lists them for reconciliation.
"""

from __future__ import annotations

import time
from typing import Any

from hub.billing.stripe_wire import ObjectStore, new_id, public

MONTH = 30 * 24 * 3600


class StripeSimulator:
    """Stripe's side of the payment flows LearnHub uses."""

    def __init__(self, store: ObjectStore, *, clock: Any = time.time) -> None:
        self.store = store
        self.clock = clock

    def now(self) -> int:
        """Current Unix time of the simulation."""
        return int(self.clock())

    def _get(self, object_id: str) -> dict[str, Any]:
        obj = self.store.get(object_id)
        if obj is None:
            raise KeyError(f"no such object {object_id}")
        return obj

    def event(
        self, event_type: str, obj: dict[str, Any], previous: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Build, store and return an event about ``obj`` (a snapshot, like Stripe sends)."""
        data: dict[str, Any] = {"object": public(obj)}
        if previous:
            data["previous_attributes"] = previous
        event = {
            "id": new_id("evt"),
            "object": "event",
            "api_version": "2026-10-28.endive",
            "created": self.now(),
            "data": data,
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": event_type,
        }
        self.store.put(event)
        return event

    # -- checkout ------------------------------------------------------------------------------

    def complete_checkout(
        self, session_id: str, *, async_payment: bool = False
    ) -> list[dict[str, Any]]:
        """The learner pays: returns the events in the order Stripe typically sends them."""
        session = self._get(session_id)
        customer = session.get("customer") or new_id("cus")
        session["customer"] = customer
        session["status"] = "complete"
        events: list[dict[str, Any]] = []
        if session["mode"] == "subscription":
            sub = self._new_subscription(session, customer)
            invoice = self._new_invoice(sub, paid=True)
            session["subscription"] = sub["id"]
            session["invoice"] = invoice["id"]
            session["payment_status"] = "paid"
            self.store.put(session)
            events.append(self.event("customer.subscription.created", sub))
            events.append(self.event("invoice.paid", invoice))
            events.append(self.event("checkout.session.completed", session))
            return events
        intent = {
            "id": new_id("pi"),
            "object": "payment_intent",
            "created": self.now(),
            "amount": session.get("amount_total", 0),
            "currency": session.get("currency", "usd"),
            "customer": customer,
            "metadata": (session.get("_payment_intent_data") or {}).get("metadata") or {},
            "status": "processing" if async_payment else "succeeded",
            "latest_charge": None,
            "livemode": False,
        }
        session["payment_intent"] = intent["id"]
        if async_payment:
            session["payment_status"] = "unpaid"
            self.store.put(intent)
        else:
            charge = self._new_charge(intent)
            intent["latest_charge"] = charge["id"]
            self.store.put(intent)
            session["payment_status"] = "paid"
            events.append(self.event("charge.succeeded", charge))
        self.store.put(session)
        events.append(self.event("checkout.session.completed", session))
        return events

    def settle_async_payment(self, session_id: str, *, succeeded: bool) -> list[dict[str, Any]]:
        """A delayed payment (bank debit) settles or fails."""
        session = self._get(session_id)
        intent = self._get(str(session["payment_intent"]))
        if succeeded:
            charge = self._new_charge(intent)
            intent["status"] = "succeeded"
            intent["latest_charge"] = charge["id"]
            session["payment_status"] = "paid"
            kind = "checkout.session.async_payment_succeeded"
        else:
            intent["status"] = "requires_payment_method"
            kind = "checkout.session.async_payment_failed"
        self.store.put(intent)
        self.store.put(session)
        return [self.event(kind, session)]

    def _new_charge(self, intent: dict[str, Any]) -> dict[str, Any]:
        charge = {
            "id": new_id("ch"),
            "object": "charge",
            "created": self.now(),
            "amount": intent["amount"],
            "amount_refunded": 0,
            "currency": intent["currency"],
            "customer": intent["customer"],
            "payment_intent": intent["id"],
            "metadata": intent.get("metadata") or {},
            "paid": True,
            "captured": True,
            "status": "succeeded",
            "refunded": False,
            "disputed": False,
            "livemode": False,
        }
        self.store.put(charge)
        return charge

    # -- refunds and disputes ------------------------------------------------------------------

    def refund(self, charge_id: str) -> list[dict[str, Any]]:
        """A full refund of the charge."""
        charge = self._get(charge_id)
        charge["refunded"] = True
        charge["amount_refunded"] = charge["amount"]
        self.store.put(charge)
        return [self.event("charge.refunded", charge, {"refunded": False, "amount_refunded": 0})]

    def open_dispute(self, charge_id: str) -> tuple[str, list[dict[str, Any]]]:
        """The cardholder disputes the charge; returns the dispute id and events."""
        charge = self._get(charge_id)
        charge["disputed"] = True
        self.store.put(charge)
        dispute = {
            "id": new_id("dp"),
            "object": "dispute",
            "created": self.now(),
            "amount": charge["amount"],
            "currency": charge["currency"],
            "charge": charge_id,
            "payment_intent": charge["payment_intent"],
            "reason": "fraudulent",
            "status": "needs_response",
            "livemode": False,
        }
        self.store.put(dispute)
        return str(dispute["id"]), [self.event("charge.dispute.created", dispute)]

    def close_dispute(self, dispute_id: str, *, won: bool) -> list[dict[str, Any]]:
        """The card network decides the dispute."""
        dispute = self._get(dispute_id)
        previous = {"status": dispute["status"]}
        dispute["status"] = "won" if won else "lost"
        self.store.put(dispute)
        return [self.event("charge.dispute.closed", dispute, previous)]

    # -- subscriptions -------------------------------------------------------------------------

    def _new_subscription(self, session: dict[str, Any], customer: str) -> dict[str, Any]:
        now = self.now()
        items = session.get("_line_items") or [{}]
        price = (items[0] or {}).get("price_data") or {}
        sub = {
            "id": new_id("sub"),
            "object": "subscription",
            "created": now,
            "customer": customer,
            "status": "active",
            "cancel_at_period_end": False,
            "canceled_at": None,
            "ended_at": None,
            "metadata": (session.get("_subscription_data") or {}).get("metadata") or {},
            "latest_invoice": None,
            "items": {
                "object": "list",
                "data": [
                    {
                        "id": new_id("si"),
                        "object": "subscription_item",
                        "current_period_start": now,
                        "current_period_end": now + MONTH,
                        "price": {
                            "id": new_id("price"),
                            "object": "price",
                            "currency": price.get("currency", "usd"),
                            "unit_amount": int(price.get("unit_amount") or 0),
                            "recurring": price.get("recurring") or {"interval": "month"},
                        },
                        "quantity": 1,
                    }
                ],
                "has_more": False,
            },
            "livemode": False,
        }
        self.store.put(sub)
        return sub

    def _new_invoice(self, sub: dict[str, Any], *, paid: bool) -> dict[str, Any]:
        item = sub["items"]["data"][0]
        invoice = {
            "id": new_id("in"),
            "object": "invoice",
            "created": self.now(),
            "customer": sub["customer"],
            "status": "paid" if paid else "open",
            "currency": item["price"].get("currency", "usd"),
            "amount_due": item["price"]["unit_amount"],
            "amount_paid": item["price"]["unit_amount"] if paid else 0,
            "period_start": item["current_period_start"],
            "period_end": item["current_period_start"],
            "parent": {
                "type": "subscription_details",
                "quote_details": None,
                "subscription_details": {
                    "subscription": sub["id"],
                    "metadata": sub.get("metadata") or {},
                },
            },
            "livemode": False,
        }
        sub["latest_invoice"] = invoice["id"]
        self.store.put(invoice)
        self.store.put(sub)
        return invoice

    def renew(self, subscription_id: str, *, paid: bool) -> tuple[str, list[dict[str, Any]]]:
        """The period rolls over and the renewal invoice is paid or fails."""
        sub = self._get(subscription_id)
        item = sub["items"]["data"][0]
        start = item["current_period_end"]
        item["current_period_start"] = start
        item["current_period_end"] = start + MONTH
        previous = {"status": sub["status"]}
        sub["status"] = "active" if paid else "past_due"
        invoice = self._new_invoice(sub, paid=paid)
        kind = "invoice.paid" if paid else "invoice.payment_failed"
        events = [
            self.event(kind, invoice),
            self.event("customer.subscription.updated", sub, previous),
        ]
        return str(invoice["id"]), events

    def pay_invoice(self, invoice_id: str) -> list[dict[str, Any]]:
        """A retried invoice succeeds; the subscription becomes active again."""
        invoice = self._get(invoice_id)
        invoice["status"] = "paid"
        invoice["amount_paid"] = invoice["amount_due"]
        self.store.put(invoice)
        sub = self._get(invoice["parent"]["subscription_details"]["subscription"])
        previous = {"status": sub["status"]}
        sub["status"] = "active"
        self.store.put(sub)
        return [
            self.event("invoice.paid", invoice),
            self.event("customer.subscription.updated", sub, previous),
        ]

    def cancel(self, subscription_id: str, *, at_period_end: bool) -> list[dict[str, Any]]:
        """The learner cancels: now, or at the end of the paid period."""
        sub = self._get(subscription_id)
        sub["canceled_at"] = self.now()
        if at_period_end:
            sub["cancel_at_period_end"] = True
            self.store.put(sub)
            return [
                self.event("customer.subscription.updated", sub, {"cancel_at_period_end": False})
            ]
        return self.end_subscription(subscription_id)

    def end_subscription(self, subscription_id: str) -> list[dict[str, Any]]:
        """The subscription ends (immediate cancel, or its period ran out after cancel)."""
        sub = self._get(subscription_id)
        sub["status"] = "canceled"
        sub["ended_at"] = self.now()
        self.store.put(sub)
        return [self.event("customer.subscription.deleted", sub)]


class DictStore:
    """An in-memory :class:`ObjectStore` (tests, and a fallback for tools)."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}

    def get(self, object_id: str) -> dict[str, Any] | None:
        """The object, or None."""
        return self.objects.get(object_id)

    def put(self, obj: dict[str, Any]) -> None:
        """Insert or replace."""
        self.objects[str(obj["id"])] = obj

    def all(self, object_type: str) -> list[dict[str, Any]]:
        """All objects of one type."""
        return [o for o in list(self.objects.values()) if o.get("object") == object_type]
