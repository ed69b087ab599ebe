"""The offline demo checkout (``payments.provider: demo``): a page with Pay / Refund buttons.

Pressing a button makes the demo "Stripe" change its objects, then delivers genuinely signed
Stripe-format events over HTTP to the service's own webhook, which verifies them and re-fetches
the objects from ``{prefix}demo-stripe/v1/...`` (served from LearnHub's database). So the demo
exercises exactly the code path real Stripe payments take.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import httpx

from hub.billing import stripe_wire
from hub.billing.demo import DatabaseStore, deliver
from hub.billing.simulator import StripeSimulator
from hub.i18n.money import format_money
from hub.service.base import BaseHandler, LearnerPage, route
from hub.service.deadlines import deadline_view
from hub.store import utcnow


class DemoStripeAPIHandler(BaseHandler):
    """``{prefix}demo-stripe/v1/...``: the calls LearnHub makes to Stripe, from the database."""

    def check_xsrf_cookie(self) -> None:
        """API calls authenticate with the bearer key, not cookies."""

    def _authorized(self) -> bool:
        expected = self.ctx.demo_api_key
        if expected is None:
            return False
        given = self.request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        return secrets.compare_digest(given.encode(), expected.encode())

    async def _answer(self, path: str) -> None:
        if not self._authorized():
            status, body = stripe_wire.error(401, "Invalid API Key provided", "api_key_invalid")
        else:
            store = DatabaseStore(self.ctx.db)
            prefix = self.ctx.prefix
            status, body = await asyncio.to_thread(
                stripe_wire.handle,
                store,
                self.request.method or "GET",
                "/" + path,
                self.request.query,
                self.request.body.decode("utf-8", "replace"),
                checkout_url=lambda sid: f"{prefix}demo-checkout/{sid}",
            )
        self.write_json(status, body)

    async def get(self, path: str) -> None:
        """Retrieve and list."""
        await self._answer(path)

    async def post(self, path: str) -> None:
        """Create."""
        await self._answer(path)


class DemoCheckoutHandler(LearnerPage):
    """``{prefix}demo-checkout/<session_id>``: the demo's stand-in for Stripe's hosted page."""

    def _store(self) -> DatabaseStore:
        return DatabaseStore(self.ctx.db)

    async def _session(self, session_id: str, user: str) -> dict[str, Any] | None:
        session = await asyncio.to_thread(self._store().get, session_id)
        if session is None or session.get("client_reference_id") != user:
            return None
        return session

    async def _my_session(self, session_id: str) -> dict[str, Any] | None:
        """The signed-in learner's own checkout session; None after answering (login, 404)."""
        user = self.require_learner()
        if user is None:
            return None
        session = await self._session(session_id, user)
        if session is None:
            self.show_message(404, "unknown", "unknown_checkout_title", "unknown_checkout_body")
        return session

    def _state(self, session: dict[str, Any]) -> str:
        """Where the demo checkout stands: ``open`` (Pay), ``paid`` (Refund), ``refunded`` or
        ``expired`` (no button). Blocking: reads the store."""
        if session.get("status") == "open":
            return "open"
        if session.get("status") != "complete":
            return "expired"
        store = self._store()
        if session.get("mode") == "subscription":
            sub = store.get(str(session.get("subscription")))
            return "refunded" if sub is None or sub.get("status") == "canceled" else "paid"
        intent = store.get(str(session.get("payment_intent")))
        charge = store.get(str(intent.get("latest_charge"))) if intent else None
        return "refunded" if charge is None or charge.get("refunded") else "paid"

    async def get(self, session_id: str) -> None:
        """Show what is being bought and the one button that applies now."""
        session = await self._my_session(session_id)
        if session is None:
            return
        state = await asyncio.to_thread(self._state, session)
        meta = session.get("metadata") or {}
        what = self.course_title(meta.get("learnhub_course"), meta.get("learnhub_plan"))
        amount = int(session.get("amount_total") or 0)
        currency = str(session.get("currency", "usd"))
        entry = self.ctx.catalog.get(str(meta.get("learnhub_course", "")))
        self.render_page(
            200,
            "demo_checkout.html",
            title=self.translate("demo_title"),
            what=what,
            amount=format_money(amount, currency, self.lang),
            state=state,
            # What the buyer's deadlines will be, before they pay (hub/service/deadlines.py).
            deadlines=deadline_view(entry.course, self.lang, utcnow(), self.time_zone)
            if entry
            else None,
        )

    async def post(self, session_id: str) -> None:
        """Pay or refund, then deliver the signed events to the webhook."""
        session = await self._my_session(session_id)
        if session is None:
            return
        action = self.get_body_argument("action", "")
        simulator = StripeSimulator(self._store())
        state = await asyncio.to_thread(self._state, session)
        if action == "pay" and state == "open":
            events = await asyncio.to_thread(simulator.complete_checkout, session_id)
        elif action == "refund" and state == "paid":
            events = await asyncio.to_thread(self._refund_events, simulator, session)
        else:
            self.show_message(409, "nothing", "demo_nothing_title", "demo_nothing_body")
            return
        secret = self.ctx.webhook_secrets[0]
        # Where the service listens, else the configured public URL; never the request's Host
        # header (the signed events would go wherever the sender pointed it).
        if self.ctx.service_url:
            webhook_url = f"{self.ctx.service_url.rstrip('/')}{self.ctx.prefix}stripe/webhook"
        else:
            webhook_url = self.ctx.settings.absolute_url(f"{self.ctx.prefix}stripe/webhook")
        async with httpx.AsyncClient(timeout=30) as client:
            for event in events:
                await deliver(client, webhook_url, event, secret)
        if action == "pay":
            success = str(session.get("success_url") or f"{self.ctx.prefix}checkout/success")
            self.redirect(success.replace("{CHECKOUT_SESSION_ID}", session_id), status=303)
        else:
            self.show_message(200, "refunded", "demo_refunded_title", "demo_refunded_body")

    @staticmethod
    def _refund_events(simulator: StripeSimulator, session: dict[str, Any]) -> list[dict[str, Any]]:
        if session.get("mode") == "subscription":
            return simulator.cancel(str(session["subscription"]), at_period_end=False)
        intent = simulator.store.get(str(session["payment_intent"]))
        if intent is None or not intent.get("latest_charge"):
            return []
        return simulator.refund(str(intent["latest_charge"]))


def demo_routes(prefix: str) -> list[Any]:
    """Routes of the demo provider."""
    return [
        (route(prefix, "demo-stripe/(v1/.*)"), DemoStripeAPIHandler),
        (route(prefix, "demo-checkout/(cs_[A-Za-z0-9_]+)"), DemoCheckoutHandler),
    ]
