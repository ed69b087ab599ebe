"""The base of the LearnHub service's handlers: who is looking, pages, routes, access log.

Learner pages authenticate with the Hub through OAuth (:class:`HubOAuthenticated`). Every form
POST of a signed-in user carries an XSRF token (tornado ``xsrf_cookies`` with JupyterHub's token
scheme); handlers that authenticate with a signature or a bearer key instead of cookies (the
webhook, the demo Stripe API) opt out. Every handler reaches the service's parts through
:attr:`BaseHandler.ctx` (:mod:`hub.service.context`).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import re
from functools import cache
from typing import Any
from urllib.parse import quote, urlencode

from jupyterhub.services.auth import HubOAuthenticated, UserNotAllowed
from markupsafe import Markup
from tornado import web
from tornado.log import access_log

from hub.access.policy import Member, listed_instructor_of
from hub.billing.checkout import user_courses
from hub.courses import CourseEntry, learner_group
from hub.i18n import (
    LANG_COOKIE,
    LANGUAGE_NAMES,
    LANGUAGES,
    choose_language,
    plural_translator,
    translator,
)
from hub.i18n.dates import TZ_COOKIE, formatter, normalize_zone, viewer_zone
from hub.preferences import saved_zone
from hub.service.context import (
    CONTEXT_SETTING,
    SITE_TEMPLATES_DIR,
    TEMPLATES_DIR,
    ServiceContext,
)
from hub.service.ratelimit import retry_after

log = logging.getLogger("learnhub.service")


#: Where a form's answer may redirect the browser besides this site (Chromium applies
#: ``form-action`` to those redirects): Stripe's hosted Checkout and Customer Portal.
STRIPE_FORM_TARGETS = ("https://checkout.stripe.com", "https://billing.stripe.com")


#: How base.html's <style> takes in the navigation's rules.
NAV_CSS_INCLUDE = '{% include "site/nav.css" %}'


@cache
def content_security_policy(public_origin: str) -> str:
    """The ``Content-Security-Policy`` of every service page and API answer.

    The pages load only same-origin things (the hub's stylesheet, logo and favicon under
    ``{hub_base}hub/``; forms post to the service), run no script, and are never framed
    (clickjacking Buy, Pay, vote, accept). Their one ``<style>`` element is allowed by its
    hash, read from ``base.html`` itself, so editing it cannot silently break the policy.
    Forms may lead to ``public_origin`` (the success page the demo's Pay redirects to) and to
    Stripe.
    """
    template = (TEMPLATES_DIR / "base.html").read_text(encoding="utf-8")
    match = re.search(r"<style>(.*?)</style>", template, re.S)
    styles = "'self'"
    if match:
        # The navigation's rules, shared with the Hub's pages, are included as Jinja renders
        # them (without the file's last newline).
        nav_css = (SITE_TEMPLATES_DIR / "site" / "nav.css").read_text(encoding="utf-8")
        style = match.group(1).replace(NAV_CSS_INCLUDE, nav_css.removesuffix("\n"))
        digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
        styles += f" 'sha256-{digest}'"
    forms = " ".join(("'self'", public_origin, *STRIPE_FORM_TARGETS))
    return (
        "default-src 'none'; script-src 'none'; "
        f"style-src {styles}; img-src 'self' data:; font-src 'self'; "
        f"form-action {forms}; base-uri 'none'; frame-ancestors 'none'"
    )


def spawn_url(hub_base: str, user: str, course_id: str) -> str:
    """JupyterHub's page that starts (or resumes) a user's course server."""
    return f"{hub_base}hub/spawn/{quote(user, safe='')}/{quote(course_id, safe='')}"


class BaseHandler(web.RequestHandler):
    """Shared access to the service's parts: :attr:`ctx`."""

    @property
    def ctx(self) -> ServiceContext:
        """The service's parts (settings, catalog, database, billing, URLs...), built at start."""
        ctx: ServiceContext = self.settings[CONTEXT_SETTING]
        return ctx

    def set_default_headers(self) -> None:
        """Security headers on every answer, errors included (tornado re-applies them then)."""
        self.set_header("Content-Security-Policy", content_security_policy(self.ctx.public_origin))
        self.set_header("X-Frame-Options", "DENY")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "same-origin")

    def write_json(self, status: int, body: dict[str, Any]) -> None:
        """Finish with a JSON body."""
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))

    def wants_json(self) -> bool:
        """Whether the caller asked for JSON rather than a page."""
        return "application/json" in self.request.headers.get("Accept", "")


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

    _viewer: Member | None = None

    def viewer(self) -> Member | None:
        """Who is looking, as a :class:`Member`: name from :meth:`learner_name`, admin flag and
        groups from the Hub, the courses whose `course.yaml` lists them. Built once a request."""
        name = self.learner_name()
        if name is None:
            return None
        if self._viewer is None or self._viewer.name != name:
            user = self.current_user
            model = user if isinstance(user, dict) and user.get("name") == name else {"name": name}
            hub_member = Member.from_hub_model(model)
            catalog = self.settings[CONTEXT_SETTING].catalog
            self._viewer = Member(
                name=name,
                admin=hub_member.admin,
                groups=hub_member.groups,
                listed=listed_instructor_of(name, [entry.course for entry in catalog]),
            )
        return self._viewer

    def require_learner(self) -> str | None:
        """The username; when nobody is signed in, redirect to the Hub login and return None."""
        name = self.learner_name()
        if name is None:
            self.redirect(self.get_login_url())
        return name

    #: Check visitors' POSTs too: for forms whose answer changes the visitor's own browser
    #: (the time zone cookie), which a forged cross-site form could otherwise set for them.
    xsrf_for_visitors = False

    def check_xsrf_cookie(self) -> None:
        """Require the XSRF token on every POST that a Hub login cookie could authenticate,
        and on a visitor's POST where :attr:`xsrf_for_visitors` says so.

        JupyterHub's check (inherited from :class:`HubOAuthenticated`) binds the token to the
        OAuth cookie and session, or, for a visitor, to their address and browser (as the
        Hub's own login form). A request without our login cookie carries no ambient
        credential a forged cross-site form could abuse (it is anonymous, or authenticated by an
        ``Authorization`` header), so most have nothing to protect; JupyterHub itself only
        checks XSRF when that cookie is present (``HubOAuth._get_user_cookie``). A refusal is
        :class:`FormRefused`: a page in the viewer's language that says what to do.
        """
        signed_in = bool(self.get_secure_cookie(self.hub_auth.cookie_name))
        if not signed_in and not self.xsrf_for_visitors:
            return
        try:
            super().check_xsrf_cookie()
        except web.HTTPError as exc:
            if exc.status_code != 403:
                raise
            # Not the user's name: asking who is signed in checks XSRF again (JupyterHub's
            # cookie authentication does), which would come straight back here.
            log.warning(
                "form refused: no valid XSRF token",
                extra={"signed_in": signed_in, "outcome": "403", "path": self.request.path},
            )
            raise FormRefused() from exc


class FormRefused(web.HTTPError):
    """A POST without a valid XSRF token (a forged cross-site form, or a form kept open past
    its token's life): 403, shown as a page that says to reload the form and send it again."""

    def __init__(self) -> None:
        super().__init__(403, "form without a valid XSRF token")


class LearnerPage(LearnerHandler, BaseHandler):
    """Base of the service's HTML pages: language, time zone, templates, the signed-in viewer."""

    _lang: str | None = None
    _known_etag: str | None = None
    _saved_zone: str | None = None

    async def prepare(self) -> None:
        """Learn who is looking and, for a member whose browser carries no time zone cookie,
        the zone they saved (one primary-key read, off the loop; the cookie is set from it so
        their next pages need none)."""
        await super().prepare()
        name = self.learner_name()
        if name is None or normalize_zone(self.get_cookie(TZ_COOKIE)):
            return
        self._saved_zone = await asyncio.to_thread(saved_zone, self.ctx.db, name)
        if self._saved_zone:
            self.set_time_zone_cookie(self._saved_zone)

    @property
    def time_zone(self) -> str:
        """The zone the page shows times in (:func:`hub.i18n.dates.viewer_zone`)."""
        return viewer_zone(self.get_cookie(TZ_COOKIE), self._saved_zone)

    def set_time_zone_cookie(self, zone: str) -> None:
        """Remember ``zone`` in this browser, for the service's pages and the Hub's."""
        self.set_cookie(TZ_COOKIE, zone, path=self.ctx.hub_base, samesite="Lax", expires_days=365)

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
                self.set_cookie(LANG_COOKIE, self._lang, path=self.ctx.hub_base, samesite="Lax")
        return self._lang

    def lang_url(self, code: str) -> str:
        """This page's URL with ``?lang=code``."""
        args = [(k, v) for k, vs in self.request.query_arguments.items() for v in vs if k != "lang"]
        pairs = [(k, v.decode("utf-8", "replace")) for k, v in args] + [("lang", code)]
        return f"{self.request.path}?{urlencode(pairs)}"

    def login_url_for(self, next_path: str) -> str:
        """Our sign-in link: OAuth with the Hub, then back to ``next_path``."""
        return f"{self.ctx.prefix}login?{urlencode({'next': next_path})}"

    def render_page(self, status: int, template: str, **context: Any) -> None:
        """Render ``template`` with the shared page context and finish."""
        self.send_html(status, self.page_html(template, **context))

    def page_html(self, template: str, **context: Any) -> str:
        """``template`` rendered with the shared page context (language, viewer, links)."""
        lang = self.lang
        viewer = context.pop("viewer", None) or self.viewer()
        base_context: dict[str, Any] = {
            "lang": lang,
            "_": translator(lang),
            "_n": plural_translator(lang),
            "prefix": self.ctx.prefix,
            "hub_base": self.ctx.hub_base,
            # The navigation links the Hub's change-password page for LearnHub's own accounts.
            "native_auth": self.ctx.settings.auth.kind == "native",
            "hub_static": f"{self.ctx.hub_base}hub/static/",
            "viewer": viewer,
            "languages": [(code, LANGUAGE_NAMES[code]) for code in LANGUAGES],
            "lang_url": self.lang_url,
            # Dates and times: when(moment), day(moment), iso(moment), time_zone.
            **formatter(lang, self.time_zone),
            "login_url": self.login_url_for(self.request.path),
            # Only signed-in people see forms; anonymous pages set no XSRF cookie. Tornado
            # builds this hidden input and escapes the token itself.
            "xsrf_form_html": Markup(self.xsrf_form_html()) if viewer else Markup(""),  # noqa: S704
            "title": "",
            # Public pages (catalog, course, preview) describe themselves (hub.seo.PageMeta);
            # the course page adds schema.org data.
            "meta": None,
            "structured_data": None,
        }
        base_context.update(context)
        return self.ctx.templates.get_template(template).render(**base_context)

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

    async def owned_courses(self) -> frozenset[str]:
        """Courses the signed-in viewer's entitlements in our database give them now."""
        viewer = self.viewer()
        if viewer is None:
            return frozenset()
        owned = await asyncio.to_thread(
            user_courses, self.ctx.db, self.ctx.catalog, self.ctx.settings, viewer.name
        )
        return frozenset(owned)

    async def member(self) -> Member | None:
        """The viewer with their database entitlements: what a page shows (Buy or Open).

        The Hub's groups count too, so a grant shows before the next sync reaches the Hub.
        """
        viewer = self.viewer()
        if viewer is None:
            return None
        return Member(
            name=viewer.name,
            admin=viewer.admin,
            groups=viewer.groups,
            entitled=await self.owned_courses(),
            listed=viewer.listed,
        )

    async def writer(self) -> Member | None:
        """The viewer as a writer (Q&A, reviews): learner rights from our database alone.

        The Hub's learner groups lag a refund or revoke until the next sync and the service's
        copy of them is cached for minutes, so a write does not trust them: a revoked
        entitlement refuses the write at once. Instructor groups, `course.yaml` listing and the
        admin flag count as for any page.
        """
        viewer = self.viewer()
        if viewer is None:
            return None
        learner_groups = {learner_group(entry.course.id) for entry in self.ctx.catalog}
        return Member(
            name=viewer.name,
            admin=viewer.admin,
            groups=viewer.groups - learner_groups,
            entitled=await self.owned_courses(),
            listed=viewer.listed,
        )

    def over_limit(self, action: str) -> bool:
        """Take one of the caller's ``action`` tokens (``limits`` settings); when none is left,
        answer 429 with ``Retry-After`` (a page, or JSON for JSON callers) and return True.

        The caller is the signed-in user, else the client address.
        """
        limiter = self.ctx.limiter
        if limiter is None:
            return False
        name = self.learner_name()
        who = f"user:{name}" if name is not None else f"addr:{self.request.remote_ip}"
        wait = limiter.take(action, who)
        if not wait:
            return False
        seconds = retry_after(wait)
        log.warning(
            "rate limited",
            extra={"user": name, "action": action, "retry_after": seconds, "outcome": "429"},
        )
        self.set_header("Retry-After", str(seconds))
        if self.wants_json():
            self.write_json(429, {"error": "too many requests", "retry_after": seconds})
        else:
            self.show_message(
                429,
                "rate-limited",
                "rate_limited_title",
                "rate_limited_body",
                alert="warning",
                seconds=seconds,
            )
        return True

    def course_or_404(self, course_id: str) -> CourseEntry | None:
        """The catalog's course ``course_id``, or None after answering 404."""
        entry = self.ctx.catalog.get(course_id)
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
        title, body = f"{status_code} {reason}", ""
        exc_info = kwargs.get("exc_info")
        if exc_info is not None and isinstance(exc_info[1], FormRefused):
            title, body = self.translate("form_refused_title"), self.translate("form_refused_body")
        try:
            self.render_page(
                status_code,
                "message.html",
                kind="error",
                title=title,
                body=body,
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
            entry = self.ctx.catalog.get(course_id)
            return entry.course.title if entry else course_id
        plan = next((p for p in self.ctx.settings.payments.plans if p.id == plan_id), None)
        return translator(self.lang)("plan", plan=plan.title if plan else plan_id)


class NotFoundPage(LearnerPage):
    """Any path under the service's prefix that no route matches: a 404 page like the others
    (with the same security headers), not tornado's bare one."""

    async def prepare(self) -> None:
        """Learn who is looking (the page shows them), then answer 404 whatever the method."""
        await super().prepare()
        raise web.HTTPError(404)


def route(prefix: str, pattern: str) -> str:
    """A route regex: the literal, escaped prefix followed by ``pattern``.

    The prefix holds the hub's base URL, which may contain regex metacharacters
    (``/@/space%20word/``, ``/c++/``, ``/a.b/``); escaping makes it match only itself.
    """
    return re.escape(prefix) + pattern


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
