"""The LearnHub service's web app: catalog, checkout pages, Stripe webhook, dashboards.

Runs as a JupyterHub managed service. Learner pages authenticate with the Hub through OAuth
(:class:`HubOAuthenticated`); the webhook has no login and trusts only Stripe's signature.
Every form POST of a signed-in user carries an XSRF token (tornado ``xsrf_cookies`` with
JupyterHub's token scheme); the webhook and the demo Stripe API opt out, they authenticate
with signatures and bearer keys, never with cookies.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
import stripe
from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated, UserNotAllowed
from markupsafe import Markup
from sqlalchemy.exc import SQLAlchemyError
from tornado import web
from tornado.log import access_log

from hub.access.hub_groups import HubClient
from hub.access.status import EntitlementStatus
from hub.billing.checkout import CheckoutRefused, create_checkout
from hub.billing.events import EventQueue
from hub.billing.fulfilment import Billing, FulfilmentError, SyncAccess
from hub.billing.webhook import WebhookRejected, split_secrets, verify_event
from hub.courses import Catalog, CourseEntry
from hub.i18n import LANG_COOKIE, LANGUAGE_NAMES, LANGUAGES, choose_language, translator
from hub.settings import Settings
from hub.store import Database

log = logging.getLogger("learnhub.service")

TEMPLATES_DIR = Path(__file__).parent / "templates"


@dataclass(frozen=True)
class Viewer:
    """The signed-in person looking at a page, as the Hub described them."""

    name: str
    admin: bool = False
    groups: frozenset[str] = field(default_factory=frozenset)


def template_environment() -> jinja2.Environment:
    """The Jinja2 environment of the service's pages (autoescaped HTML)."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )


def spawn_url(hub_base: str, user: str, course_id: str) -> str:
    """JupyterHub's page that starts (or resumes) a user's course server."""
    return f"{hub_base}hub/spawn/{quote(user, safe='')}/{quote(course_id, safe='')}"


class BaseHandler(web.RequestHandler):
    """Shared access to the service's parts."""

    @property
    def billing(self) -> Billing:
        """The fulfilment engine."""
        billing: Billing = self.settings["learnhub_billing"]
        return billing

    @property
    def catalog(self) -> Catalog:
        """The course catalog."""
        catalog: Catalog = self.settings["learnhub_catalog"]
        return catalog

    @property
    def prefix(self) -> str:
        """URL prefix of the service, ending in ``/``."""
        prefix: str = self.settings["learnhub_prefix"]
        return prefix

    @property
    def hub_base(self) -> str:
        """The hub's base URL path (``/`` or e.g. ``/@/space%20word/``), ending in ``/``."""
        hub_base: str = self.settings["learnhub_hub_base"]
        return hub_base

    def write_json(self, status: int, body: dict[str, Any]) -> None:
        """Finish with a JSON body."""
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))

    def wants_json(self) -> bool:
        """Whether the caller asked for JSON rather than a page."""
        return "application/json" in self.request.headers.get("Accept", "")


class WebhookHandler(BaseHandler):
    """``POST {prefix}stripe/webhook``: verified events, recorded before Stripe gets its 2xx.

    The event is processed (exactly once, from fresh Stripe objects) by the service's
    :class:`~hub.billing.events.EventQueue`, moments later and batched with its neighbours.
    """

    def check_xsrf_cookie(self) -> None:
        """Stripe posts without cookies; the signature is the authentication."""

    async def post(self) -> None:
        """Verify the raw body, record the event durably, answer Stripe."""
        webhook_secrets: list[str] = self.settings["learnhub_webhook_secrets"]
        try:
            event = verify_event(
                self.request.body, self.request.headers.get("Stripe-Signature"), webhook_secrets
            )
        except WebhookRejected as exc:
            log.warning("webhook rejected", extra={"reason": exc.reason, "outcome": "rejected"})
            self.write_json(400, {"error": exc.reason})
            return
        events: EventQueue = self.settings["learnhub_events"]
        try:
            status = await events.accept(event)
        except SQLAlchemyError:
            # Not recorded, so not acknowledged: a 5xx makes Stripe deliver it again later.
            log.exception(
                "webhook not recorded", extra={"event": event["id"], "outcome": "db_error"}
            )
            self.write_json(500, {"error": "the event could not be recorded; deliver it again"})
            return
        # Who and what course are known once the object is re-fetched (the payload is not
        # trusted); the queue logs that line.
        log.info(
            "stripe event received",
            extra={"event": event["id"], "type": event["type"], "outcome": status},
        )
        self.write_json(200, {"status": status})


class LearnerHandler(HubOAuthenticated, web.RequestHandler):  # type: ignore[misc]
    """A page that knows the signed-in Hub user (pages may also be public)."""

    async def prepare(self) -> None:
        """Ask the Hub who is signed in without blocking the event loop.

        JupyterHub's ``get_current_user`` is synchronous: for every request, even one without
        any cookie, ``HubAuth.get_user`` runs on JupyterHub's helper thread while this loop
        waits (a thread hop per request, profiled at about a quarter of the catalog's CPU, and a
        blocking Hub API call whenever its token cache misses). Resolving the user here with
        ``sync=False`` leaves the same answer, after the same ``check_hub_user`` rule, where
        ``get_current_user`` looks first.
        """
        if hasattr(self, "_hub_auth_user_cache"):
            return
        model = await self.hub_auth.get_user(self, sync=False)
        try:
            allowed = self.check_hub_user(model) if model else None
        except UserNotAllowed:
            # Rare: JupyterHub's own path (the user is cached now) turns the login redirect
            # into a 403 for a user the Hub knows but this service does not admit.
            return
        self._hub_auth_user_cache = allowed
        if allowed:
            self.hub_auth._persist_url_token_if_set(self)

    def learner_name(self) -> str | None:
        """The signed-in Hub username, or None. The only place that decides who the user is."""
        user = self.current_user
        if isinstance(user, dict) and user.get("name"):
            return str(user["name"])
        return None

    def viewer(self) -> Viewer | None:
        """Who is looking: name from :meth:`learner_name`, admin flag and groups from the Hub."""
        name = self.learner_name()
        if name is None:
            return None
        user = self.current_user
        if isinstance(user, dict) and user.get("name") == name:
            return Viewer(
                name=name,
                admin=bool(user.get("admin")),
                groups=frozenset(str(g) for g in user.get("groups") or ()),
            )
        return Viewer(name=name)

    def require_learner(self) -> str | None:
        """The username; when nobody is signed in, redirect to the Hub login and return None."""
        name = self.learner_name()
        if name is None:
            self.redirect(self.get_login_url())
        return name

    def check_xsrf_cookie(self) -> None:
        """Require the XSRF token on every POST that a Hub login cookie could authenticate.

        JupyterHub's check (inherited from :class:`HubOAuthenticated`) binds the token to the
        OAuth cookie and session. A request without our login cookie carries no ambient
        credential a forged cross-site form could abuse (it is anonymous, or authenticated by an
        ``Authorization`` header), so it has nothing to protect; JupyterHub itself only checks
        XSRF when that cookie is present (``HubOAuth._get_user_cookie``).
        """
        if not self.get_secure_cookie(self.hub_auth.cookie_name):
            return
        super().check_xsrf_cookie()


class LearnerPage(LearnerHandler, BaseHandler):
    """Base of the service's HTML pages: language, templates, the signed-in viewer."""

    _lang: str | None = None
    _known_etag: str | None = None

    @property
    def lang(self) -> str:
        """The page language: ``?lang=``, then the cookie, then ``Accept-Language``."""
        if self._lang is None:
            query = self.get_query_argument("lang", None)
            self._lang = choose_language(
                query, self.get_cookie(LANG_COOKIE), self.request.headers.get("Accept-Language")
            )
            if query is not None and query == self._lang:
                # Remember an explicit choice across pages (and the hub's, under the same base).
                self.set_cookie(LANG_COOKIE, self._lang, path=self.hub_base, samesite="Lax")
        return self._lang

    def lang_url(self, code: str) -> str:
        """This page's URL with ``?lang=code``."""
        args = [(k, v) for k, vs in self.request.query_arguments.items() for v in vs if k != "lang"]
        pairs = [(k, v.decode("utf-8", "replace")) for k, v in args] + [("lang", code)]
        return f"{self.request.path}?{urlencode(pairs)}"

    def login_url_for(self, next_path: str) -> str:
        """Our sign-in link: OAuth with the Hub, then back to ``next_path``."""
        return f"{self.prefix}login?{urlencode({'next': next_path})}"

    def render_page(self, status: int, template: str, **context: Any) -> None:
        """Render ``template`` with the shared page context and finish."""
        self.send_html(status, self.page_html(template, **context))

    def page_html(self, template: str, **context: Any) -> str:
        """``template`` rendered with the shared page context (language, viewer, links)."""
        lang = self.lang
        viewer = context.pop("viewer", None) or self.viewer()
        env: jinja2.Environment = self.settings["learnhub_templates"]
        base_context: dict[str, Any] = {
            "lang": lang,
            "_": translator(lang),
            "prefix": self.prefix,
            "hub_base": self.hub_base,
            "hub_static": f"{self.hub_base}hub/static/",
            "viewer": viewer,
            "languages": [(code, LANGUAGE_NAMES[code]) for code in LANGUAGES],
            "lang_url": self.lang_url,
            "login_url": self.login_url_for(self.request.path),
            # Only signed-in people see forms; anonymous pages set no XSRF cookie. Tornado
            # builds this hidden input and escapes the token itself.
            "xsrf_form_html": Markup(self.xsrf_form_html()) if viewer else Markup(""),  # noqa: S704
            "title": "",
        }
        base_context.update(context)
        return env.get_template(template).render(**base_context)

    def send_html(self, status: int, html: str | bytes, *, etag: str | None = None) -> None:
        """Finish with a page in the page language.

        Every page may be revalidated (ETag, 304) but must not be reused unchecked; a signed-in
        person's page is theirs alone (``private``), and ``Vary`` keeps caches from handing one
        language's or one cookie's page to another request.
        """
        self.set_status(status)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Content-Language", self.lang)
        self.set_header("Vary", "Accept-Language, Cookie")
        self.set_header(
            "Cache-Control", "no-cache" if self.viewer() is None else "private, no-cache"
        )
        # tornado's finish() sets the ETag (compute_etag) and answers a matching If-None-Match
        # with 304 and no body.
        self._known_etag = etag
        self.finish(html)

    def compute_etag(self) -> str | None:
        """The ETag of a page kept rendered (known already), else tornado's hash of the body."""
        return self._known_etag or super().compute_etag()

    def course_or_404(self, course_id: str) -> CourseEntry | None:
        """The catalog's course ``course_id``, or None after answering 404."""
        entry = self.catalog.get(course_id)
        if entry is None:
            self.show_message(
                404, "not-found", "not_found_title", "no_such_course", course=course_id
            )
        return entry

    def show_message(
        self,
        status: int,
        kind: str,
        title_key: str,
        body_key: str,
        *,
        alert: str | None = None,
        open_url: str | None = None,
        **values: Any,
    ) -> None:
        """A short result page (checkout outcome, refusal, error) in the page language."""
        _ = translator(self.lang)
        self.render_page(
            status,
            "message.html",
            kind=kind,
            title=_(title_key),
            body=_(body_key, **values),
            alert=alert,
            open_url=open_url,
        )

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Errors (403 XSRF, 404, 500) as pages that look like the rest, never a traceback."""
        reason = self._reason or "Error"
        try:
            self.render_page(
                status_code,
                "message.html",
                kind="error",
                title=f"{status_code} {reason}",
                body="",
                alert=None,
                open_url=None,
            )
        except Exception:  # an error page must never fail itself
            log.exception("error page failed")
            super().write_error(status_code, **kwargs)

    def translate(self, key: str, **values: Any) -> str:
        """The message ``key`` in the page language."""
        return translator(self.lang)(key, **values)

    def course_title(self, course_id: str | None, plan_id: str | None = None) -> str:
        """What a checkout was for, as a person reads it."""
        if course_id is not None:
            entry = self.catalog.get(course_id)
            return entry.course.title if entry else course_id
        plan = next((p for p in self.billing.settings.payments.plans if p.id == plan_id), None)
        return translator(self.lang)("plan", plan=plan.title if plan else plan_id)


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
        course_id = item_id if self.kind == "course" else None
        plan_id = item_id if self.kind == "plan" else None
        try:
            _, url = await create_checkout(
                self.billing.client,
                self.billing.db,
                self.billing.settings,
                self.catalog,
                user=user,
                course_id=course_id,
                plan_id=plan_id,
                success_url=base + "checkout/success?session_id={CHECKOUT_SESSION_ID}",
                cancel_url=base + "checkout/cancel",
            )
        except CheckoutRefused as exc:
            if self.wants_json():
                self.write_json(exc.status, {"error": str(exc)})
            elif exc.status == 409:
                self.show_message(
                    409,
                    "refused",
                    "refused_title",
                    "already_have_access",
                    alert="info",
                    open_url=spawn_url(self.hub_base, user, course_id)
                    if course_id
                    else f"{self.hub_base}hub/home",
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
            self.show_message(
                502,
                "error",
                "payment_unavailable_title",
                "payment_unavailable_body",
                alert="warning",
            )
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
            self.show_message(400, "unknown", "unknown_checkout_title", "unknown_checkout_body")
            return
        try:
            result = await self.billing.fulfill_checkout(session_id)
        except FulfilmentError:
            self.show_message(
                502, "confirm-later", "confirm_later_title", "confirm_later_body", alert="info"
            )
            return
        mine = [u for u in result.updates if u.username == user]
        if not mine:
            # Someone else's session id: do not reveal anything about it.
            self.show_message(404, "unknown", "unknown_checkout_title", "unknown_checkout_body")
            return
        update = mine[0]
        if self.wants_json():
            self.write_json(
                200, {"status": update.status, "course": update.course_id, "plan": update.plan_id}
            )
            return
        what = self.course_title(update.course_id, update.plan_id)
        if update.status == EntitlementStatus.ACTIVE:
            open_url = (
                spawn_url(self.hub_base, user, update.course_id)
                if update.course_id
                else f"{self.hub_base}hub/home"
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


def _route(prefix: str, pattern: str) -> str:
    """A route regex: the literal, escaped prefix followed by ``pattern``.

    The prefix holds the hub's base URL, which may contain regex metacharacters
    (``/@/space%20word/``, ``/c++/``, ``/a.b/``); escaping makes it match only itself.
    """
    return re.escape(prefix) + pattern


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
    hub_base_url: str | None = None,
    hub_client: HubClient | None = None,
    extra_routes: list[Any] | None = None,
) -> web.Application:
    """The tornado application of the LearnHub service.

    ``stripe_client`` is required with ``payments.provider: stripe``. With ``demo`` it may be
    None: the app then serves its own demo Stripe API under ``{prefix}demo-stripe/`` and needs
    ``service_url`` (e.g. ``JUPYTERHUB_SERVICE_URL``, ``http://127.0.0.1:10101``) to reach it.
    ``hub_base_url`` is the hub's base URL path (``JUPYTERHUB_BASE_URL``); by default it is
    what precedes ``services/`` in ``prefix``. ``hub_client`` (the service's Hub API client)
    feeds the operator dashboard's activity figure; without it that figure is shown as
    unavailable. Webhook events go to the app's ``learnhub_events``
    (:class:`~hub.billing.events.EventQueue`), which starts working with the first delivery;
    the service awaits its ``start()`` to take up events queued before a restart.
    """
    from hub.service.community import community_routes
    from hub.service.dashboards import dashboard_routes
    from hub.service.pages import page_routes

    if not prefix.endswith("/"):
        prefix += "/"
    if hub_base_url is None:
        hub_base_url = prefix.rsplit("services/", 1)[0] if "services/" in prefix else "/"
    if not hub_base_url.endswith("/"):
        hub_base_url += "/"
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
    events = EventQueue(billing)
    routes += [
        (_route(prefix, "stripe/webhook"), WebhookHandler),
        (_route(prefix, "checkout/success"), SuccessHandler),
        (_route(prefix, "checkout/cancel"), CancelHandler),
        (_route(prefix, "checkout/plan/([a-z0-9-]+)"), CheckoutHandler, {"kind": "plan"}),
        (_route(prefix, "checkout/([a-z0-9-]+)"), CheckoutHandler, {"kind": "course"}),
        (_route(prefix, "oauth_callback"), HubOAuthCallbackHandler),
        *page_routes(prefix),
        *dashboard_routes(prefix),
        *community_routes(prefix),
        *(extra_routes or []),
    ]
    return web.Application(
        routes,
        learnhub_billing=billing,
        learnhub_events=events,
        learnhub_catalog=catalog,
        learnhub_prefix=prefix,
        learnhub_hub_base=hub_base_url,
        learnhub_hub_client=hub_client,
        learnhub_webhook_secrets=webhook_secrets,
        learnhub_service_url=service_url,
        learnhub_templates=template_environment(),
        # Signs the OAuth state/token cookies and the XSRF tokens; a restart just means a
        # silent re-login.
        cookie_secret=cookie_secret or secrets.token_bytes(32),
        # Every POST must carry a valid token; the webhook and demo API opt out explicitly.
        xsrf_cookies=True,
        log_function=log_request,
        **extra,
    )


def log_request(handler: web.RequestHandler) -> None:
    """Tornado's access line, at DEBUG for an anonymous view of a public page.

    Such a view (the catalog, a course page) is nobody's action: there is no one to name and
    nothing to audit, as with JupyterHub's static files and health checks. At INFO its line
    was about a tenth of the service's CPU per catalog page. Everything else logs as Tornado
    does: INFO below 400, WARNING for 4xx, ERROR for 5xx.
    """
    status = handler.get_status()
    if status < 400:
        level = logging.DEBUG if getattr(handler, "public_page_view", False) else logging.INFO
    elif status < 500:
        level = logging.WARNING
    else:
        level = logging.ERROR
    if access_log.isEnabledFor(level):
        millis = 1000.0 * handler.request.request_time()
        access_log.log(level, "%d %s %.2fms", status, handler._request_summary(), millis)


def checkout_path(prefix: str, course_id: str) -> str:
    """URL path of the checkout of a course."""
    return f"{prefix}checkout/{quote(course_id)}"
