"""The LearnHub service's billing routes: checkout, success/cancel pages, the Stripe webhook.

Runs as a JupyterHub managed service. Learner pages authenticate with the Hub through OAuth
(:class:`HubOAuthenticated`); the webhook has no login and trusts only Stripe's signature.
"""

from __future__ import annotations

import json
import logging
import secrets
from typing import Any
from urllib.parse import quote

import stripe
from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated
from tornado import web
from tornado.escape import xhtml_escape

from hub.billing.checkout import CheckoutRefused, create_checkout
from hub.billing.fulfilment import Billing, FulfilmentError, SyncAccess
from hub.billing.webhook import WebhookRejected, split_secrets, verify_event
from hub.courses import Catalog
from hub.settings import Settings
from hub.store import Database

log = logging.getLogger("learnhub.service")


class BaseHandler(web.RequestHandler):
    """Shared access to the service's parts."""

    @property
    def billing(self) -> Billing:
        """The fulfilment engine."""
        billing: Billing = self.settings["learnhub_billing"]
        return billing

    @property
    def prefix(self) -> str:
        """URL prefix of the service, ending in ``/``."""
        prefix: str = self.settings["learnhub_prefix"]
        return prefix

    def write_json(self, status: int, body: dict[str, Any]) -> None:
        """Finish with a JSON body."""
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))

    def write_page(self, status: int, title: str, message_html: str) -> None:
        """Finish with a minimal page (``message_html`` must already be escaped)."""
        self.set_status(status)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(
            "<!doctype html><html><head><meta charset='utf-8'>"
            f"<title>{xhtml_escape(title)}</title></head><body>"
            f"<h1>{xhtml_escape(title)}</h1>{message_html}"
            f"<p><a href='{xhtml_escape(self.prefix)}'>Back to the catalog</a></p></body></html>"
        )

    def wants_json(self) -> bool:
        """Whether the caller asked for JSON rather than a page."""
        return "application/json" in self.request.headers.get("Accept", "")


class WebhookHandler(BaseHandler):
    """``POST {prefix}stripe/webhook``: verified, exactly-once event processing."""

    def check_xsrf_cookie(self) -> None:
        """Stripe posts without cookies; the signature is the authentication."""

    async def post(self) -> None:
        """Verify the raw body, process the event, answer Stripe."""
        webhook_secrets: list[str] = self.settings["learnhub_webhook_secrets"]
        try:
            event = verify_event(
                self.request.body, self.request.headers.get("Stripe-Signature"), webhook_secrets
            )
        except WebhookRejected as exc:
            log.warning("webhook rejected", extra={"reason": exc.reason, "outcome": "rejected"})
            self.write_json(400, {"error": exc.reason})
            return
        try:
            result = await self.billing.handle_event(event)
        except FulfilmentError as exc:
            # 5xx makes Stripe redeliver later; the event is recorded as `error` meanwhile.
            self.write_json(500, {"error": str(exc)})
            return
        self.write_json(200, {"status": result.outcome})


class LearnerHandler(HubOAuthenticated, web.RequestHandler):  # type: ignore[misc]
    """A page for a signed-in Hub user."""

    def learner_name(self) -> str | None:
        """The signed-in Hub username, or None. The only place that decides who the user is."""
        user = self.current_user
        if isinstance(user, dict) and user.get("name"):
            return str(user["name"])
        return None

    def require_learner(self) -> str | None:
        """The username; when nobody is signed in, redirect to the Hub login and return None."""
        name = self.learner_name()
        if name is None:
            self.redirect(self.get_login_url())
        return name


class LearnerPage(LearnerHandler, BaseHandler):
    """Base of the checkout pages."""


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
        base = f"{self.request.protocol}://{self.request.host}{self.prefix}"
        try:
            _, url = await create_checkout(
                self.billing.client,
                self.billing.db,
                self.billing.settings,
                self.settings["learnhub_catalog"],
                user=user,
                course_id=item_id if self.kind == "course" else None,
                plan_id=item_id if self.kind == "plan" else None,
                success_url=base + "checkout/success?session_id={CHECKOUT_SESSION_ID}",
                cancel_url=base + "checkout/cancel",
            )
        except CheckoutRefused as exc:
            if self.wants_json():
                self.write_json(exc.status, {"error": str(exc)})
            else:
                self.write_page(exc.status, "Nothing to buy", f"<p>{xhtml_escape(str(exc))}</p>")
            return
        except FulfilmentError:
            self.write_page(502, "Payment unavailable", "<p>Please try again in a minute.</p>")
            return
        if self.wants_json():
            self.write_json(200, {"url": url})
        else:
            self.redirect(url, status=303)


class SuccessHandler(LearnerPage):
    """``GET {prefix}checkout/success?session_id=...``: fulfil now, don't wait for the webhook."""

    async def get(self) -> None:
        """Fulfil the session (idempotent) and say what the learner got."""
        user = self.require_learner()
        if user is None:
            return
        session_id = self.get_query_argument("session_id", "")
        if not session_id.startswith("cs_"):
            self.write_page(400, "Unknown checkout", "<p>This link has no checkout session.</p>")
            return
        try:
            result = await self.billing.fulfill_checkout(session_id)
        except FulfilmentError:
            self.write_page(
                502,
                "Payment received",
                "<p>We could not confirm it with Stripe yet; access follows within minutes.</p>",
            )
            return
        mine = [u for u in result.updates if u.username == user]
        if not mine:
            # Someone else's session id: do not reveal anything about it.
            self.write_page(404, "Unknown checkout", "<p>This checkout is not yours.</p>")
            return
        update = mine[0]
        what = update.course_id or f"plan {update.plan_id}"
        if update.status == "active":
            message = f"<p>Thank you! You now have access to {xhtml_escape(what)}.</p>"
        elif update.status == "pending":
            message = "<p>Your payment is being processed; access follows once it clears.</p>"
        else:
            message = "<p>This payment did not go through.</p>"
        if self.wants_json():
            self.write_json(
                200, {"status": update.status, "course": update.course_id, "plan": update.plan_id}
            )
        else:
            self.write_page(200, "Checkout", message)


class CancelHandler(LearnerPage):
    """``GET {prefix}checkout/cancel``."""

    def get(self) -> None:
        """Tell the learner nothing was charged."""
        self.write_page(200, "Checkout cancelled", "<p>Nothing was charged.</p>")


def make_app(
    settings: Settings,
    catalog: Catalog,
    db: Database,
    stripe_client: stripe.StripeClient | None,
    sync_access: SyncAccess,
    *,
    prefix: str = "/services/learnhub/",
    service_url: str | None = None,
    cookie_secret: bytes | None = None,
) -> web.Application:
    """The tornado application of the billing part of the LearnHub service.

    ``stripe_client`` is required with ``payments.provider: stripe``. With ``demo`` it may be
    None: the app then serves its own demo Stripe API under ``{prefix}demo-stripe/`` and needs
    ``service_url`` (e.g. ``JUPYTERHUB_SERVICE_URL``, ``http://127.0.0.1:10101``) to reach it.
    """
    if not prefix.endswith("/"):
        prefix += "/"
    webhook_secrets = split_secrets(settings.secret("stripe_webhook_secrets"))
    routes: list[Any] = []
    extra: dict[str, Any] = {}
    if settings.payments.provider == "demo":
        from hub.service.demo import demo_routes

        if not webhook_secrets:
            # No Stripe here: a per-process secret still makes every event genuinely signed.
            webhook_secrets = ["whsec_demo_" + secrets.token_hex(24)]
        api_key = settings.secret("stripe_secret_key") or "sk_test_demo_" + secrets.token_hex(16)
        if stripe_client is None:
            if service_url is None:
                raise ValueError("the demo payment provider needs service_url to reach itself")
            stripe_client = stripe.StripeClient(
                api_key,
                base_addresses={"api": service_url.rstrip("/") + prefix + "demo-stripe"},
                max_network_retries=0,
            )
            extra["learnhub_demo_api_key"] = api_key
        routes += demo_routes(prefix)
    elif stripe_client is None:
        raise ValueError("payments.provider stripe needs a stripe_client")
    if not webhook_secrets:
        raise ValueError("LEARNHUB_STRIPE_WEBHOOK_SECRETS is required to receive Stripe events")
    billing = Billing(settings, db, stripe_client, sync_access)
    routes += [
        (rf"{prefix}stripe/webhook", WebhookHandler),
        (rf"{prefix}checkout/success", SuccessHandler),
        (rf"{prefix}checkout/cancel", CancelHandler),
        (rf"{prefix}checkout/plan/([a-z0-9-]+)", CheckoutHandler, {"kind": "plan"}),
        (rf"{prefix}checkout/([a-z0-9-]+)", CheckoutHandler, {"kind": "course"}),
        (rf"{prefix}oauth_callback", HubOAuthCallbackHandler),
    ]
    return web.Application(
        routes,
        learnhub_billing=billing,
        learnhub_catalog=catalog,
        learnhub_prefix=prefix,
        learnhub_webhook_secrets=webhook_secrets,
        learnhub_service_url=service_url,
        # Only signs the OAuth state/token cookies; a restart just means a silent re-login.
        cookie_secret=cookie_secret or secrets.token_bytes(32),
        **extra,
    )


def checkout_path(prefix: str, course_id: str) -> str:
    """URL path of the checkout of a course."""
    return f"{prefix}checkout/{quote(course_id)}"
