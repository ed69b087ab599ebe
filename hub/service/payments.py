"""Buying: the checkout, its success and cancel pages, and Stripe's webhook.

The checkout creates a Stripe Checkout Session and sends the learner there. The success page
fulfils the session at once rather than wait for the webhook: ``Billing.fulfill_checkout`` is
idempotent and the webhook's events lead to the same call. The webhook has no login and trusts
only Stripe's signature.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from hub.access.status import EntitlementStatus
from hub.billing.checkout import CheckoutRefused, create_checkout
from hub.billing.fulfilment import FulfilmentError
from hub.billing.webhook import bounded_body, receive
from hub.i18n import translator
from hub.service.base import BaseHandler, LearnerPage, route, spawn_url

log = logging.getLogger("learnhub.service")


@bounded_body  # over 1 MB: 413 before the body is read or any signature work
class WebhookHandler(BaseHandler):
    """``POST {prefix}stripe/webhook``: verified events, recorded before Stripe gets its 2xx.

    The event is processed (exactly once, from fresh Stripe objects) by the service's
    :class:`~hub.billing.events.EventQueue`, moments later and batched with its neighbours.
    """

    #: What the delivery came to, for ``learnhub_webhook_deliveries_total{outcome}``.
    outcome = ""

    def check_xsrf_cookie(self) -> None:
        """Stripe posts without cookies; the signature is the authentication."""

    def on_finish(self) -> None:
        """Count the delivery once, whichever way it ended (413 is answered before ``post``)."""
        outcome = self.outcome or ("too_large" if self.get_status() == 413 else "error")
        self.ctx.metrics.webhooks.labels(outcome).inc()

    async def post(self) -> None:
        """Verify the raw body, record the event durably, answer Stripe."""
        delivery = await receive(
            self.request.body,
            self.request.headers.get("Stripe-Signature"),
            self.ctx.webhook_secrets,
            self.ctx.events.accept,
        )
        self.outcome = delivery.outcome
        self.write_json(delivery.status, delivery.body)


class CheckoutHandler(LearnerPage):
    """``POST {prefix}checkout/<course>`` and ``POST {prefix}checkout/plan/<plan>``."""

    def initialize(self, kind: str) -> None:
        """``kind`` is ``course`` or ``plan``."""
        self.kind = kind

    async def post(self, item_id: str) -> None:
        """Create a Checkout Session and send the learner to it."""
        user = self.require_learner()
        if user is None:
            return
        if self.over_limit("checkout"):
            self.ctx.metrics.checkouts.labels("rate_limited").inc()
            return
        # Stripe sends the learner back to these: from the configured public URL, never the
        # request's Host header, which whoever sends the request chooses.
        base = self.ctx.settings.absolute_url(self.ctx.prefix)
        course_id = item_id if self.kind == "course" else None
        plan_id = item_id if self.kind == "plan" else None
        try:
            _, url = await create_checkout(
                self.ctx.stripe,
                self.ctx.db,
                self.ctx.settings,
                self.ctx.catalog,
                user=user,
                course_id=course_id,
                plan_id=plan_id,
                success_url=base + "checkout/success?session_id={CHECKOUT_SESSION_ID}",
                cancel_url=base + "checkout/cancel",
            )
        except CheckoutRefused as exc:
            refused = "already_owned" if exc.status == 409 else "refused"
            self.ctx.metrics.checkouts.labels(refused).inc()
            if self.wants_json():
                self.write_json(exc.status, {"error": str(exc)})
            elif exc.status == 409:
                self.show_message(
                    409,
                    "refused",
                    "refused_title",
                    "already_have_access",
                    alert="info",
                    open_url=spawn_url(self.ctx.hub_base, user, course_id)
                    if course_id
                    else f"{self.ctx.hub_base}hub/home",
                    what=self.course_title(course_id, plan_id),
                )
            else:
                self.render_page(
                    exc.status,
                    "message.html",
                    kind="refused",
                    title=translator(self.lang)("refused_title"),
                    body=str(exc),
                    alert="warning",
                    open_url=None,
                )
            return
        except FulfilmentError:
            self.ctx.metrics.checkouts.labels("payment_unavailable").inc()
            self.show_message(
                502,
                "error",
                "payment_unavailable_title",
                "payment_unavailable_body",
                alert="warning",
            )
            return
        self.ctx.metrics.checkouts.labels("created").inc()
        if self.wants_json():
            self.write_json(200, {"url": url})
        else:
            self.redirect(url, status=303)


class SuccessHandler(LearnerPage):
    """``GET {prefix}checkout/success?session_id=...``: fulfil now, don't wait for the webhook."""

    async def get(self) -> None:
        """Fulfil the session (idempotent) and say what the learner got."""
        user = self.require_learner()
        if user is None or self.over_limit("checkout_success"):
            return
        session_id = self.get_query_argument("session_id", "")
        if not session_id.startswith("cs_"):
            self.show_message(400, "unknown", "unknown_checkout_title", "unknown_checkout_body")
            return
        try:
            result = await self.ctx.billing.fulfill_checkout(session_id)
        except FulfilmentError:
            self.ctx.metrics.checkout_returns.labels("unavailable").inc()
            self.show_message(
                502, "confirm-later", "confirm_later_title", "confirm_later_body", alert="info"
            )
            return
        mine = [u for u in result.updates if u.username == user]
        if not mine:
            # Someone else's session id: do not reveal anything about it.
            self.ctx.metrics.checkout_returns.labels("unknown").inc()
            self.show_message(404, "unknown", "unknown_checkout_title", "unknown_checkout_body")
            return
        update = mine[0]
        returned = str(update.status) if update.status in ("active", "pending") else "failed"
        self.ctx.metrics.checkout_returns.labels(returned).inc()
        if self.wants_json():
            self.write_json(
                200, {"status": update.status, "course": update.course_id, "plan": update.plan_id}
            )
            return
        what = self.course_title(update.course_id, update.plan_id)
        if update.status == EntitlementStatus.ACTIVE:
            open_url = (
                spawn_url(self.ctx.hub_base, user, update.course_id)
                if update.course_id
                else f"{self.ctx.hub_base}hub/home"
            )
            self.show_message(
                200,
                "success",
                "success_title",
                "success_body",
                alert="success",
                open_url=open_url,
                what=what,
            )
        elif update.status == EntitlementStatus.PENDING:
            self.show_message(
                200, "pending", "pending_title", "pending_body", alert="info", what=what
            )
        else:
            self.show_message(200, "failed", "failed_title", "failed_body", alert="warning")


class CancelHandler(LearnerPage):
    """``GET {prefix}checkout/cancel``."""

    def get(self) -> None:
        """Tell the learner nothing was charged."""
        self.show_message(200, "cancel", "cancel_title", "cancel_body")


def checkout_path(prefix: str, course_id: str) -> str:
    """URL path of the checkout of a course."""
    return f"{prefix}checkout/{quote(course_id)}"


def payment_routes(prefix: str) -> list[Any]:
    """Routes of the webhook and the checkout pages."""
    return [
        (route(prefix, "stripe/webhook"), WebhookHandler),
        (route(prefix, "checkout/success"), SuccessHandler),
        (route(prefix, "checkout/cancel"), CancelHandler),
        (route(prefix, "checkout/plan/([a-z0-9-]+)"), CheckoutHandler, {"kind": "plan"}),
        (route(prefix, "checkout/([a-z0-9-]+)"), CheckoutHandler, {"kind": "course"}),
    ]
