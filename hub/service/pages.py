"""The public catalog, course pages, sign-in hop, purchase history and billing portal."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
import stripe
from jupyterhub.services.auth import HubOAuthCallbackHandler
from tornado import web

from hub.access.policy import Member
from hub.access.status import PurchaseStatus
from hub.courses import CourseEntry
from hub.i18n import translate, translator
from hub.i18n.dates import format_datetime, iso
from hub.i18n.money import format_money
from hub.reviews import (
    ReviewRejected,
    announcements,
    course_reviews,
    generation,
    rating_summary,
    save_review,
    validate,
)
from hub.seo import PageMeta, course_data, json_ld, short_description
from hub.service.base import LearnerPage, route, spawn_url
from hub.service.deadlines import deadline_view
from hub.service.reports import PurchaseRow, purchase_history
from hub.service.storefront import preview_path
from hub.store import CheckoutSession, Entitlement, utcnow
from hub.store import repository as repo

log = logging.getLogger("learnhub.service")

#: Bootstrap badge classes per purchase status.
STATUS_BADGES = {
    PurchaseStatus.ACTIVE: "bg-success",
    PurchaseStatus.PENDING: "bg-info text-dark",
    PurchaseStatus.PAST_DUE: "bg-warning text-dark",
    PurchaseStatus.REFUNDED: "bg-secondary",
    PurchaseStatus.DISPUTED: "bg-danger",
    PurchaseStatus.REVOKED: "bg-secondary",
    PurchaseStatus.OPEN: "bg-light text-dark",
}


def format_price(amount: int, currency: str, lang: str) -> str:
    """``6900, usd`` -> ``$69.00``; ``4900, jpy`` -> ``¥4,900``; 0 -> ``Free``."""
    return translate(lang, "free") if amount == 0 else format_money(amount, currency, lang)


@dataclass(frozen=True)
class PublicPage:
    """One rendered anonymous view of a public page."""

    body: bytes
    etag: str
    generation: int


class PublicPages:
    """The anonymous views of the catalog and the course pages, rendered once each.

    What such a view shows depends only on the page's path, its language, the catalog (loaded
    once, fixed for the life of the service) and the reviews and announcements, whose changes
    :func:`hub.reviews.generation` counts. An entry made before the last change is never
    served. Only anonymous requests read or fill it; the keys are the public pages' paths in
    each language, so it cannot grow beyond them.
    """

    def __init__(self) -> None:
        self._pages: dict[tuple[str, str, str], PublicPage] = {}

    def get(self, key: tuple[str, str, str]) -> PublicPage | None:
        """The current page for ``(path, language, time zone)``, or None."""
        page = self._pages.get(key)
        return page if page is not None and page.generation == generation() else None

    def put(self, key: tuple[str, str, str], html: str, rendered_at: int) -> PublicPage:
        """Keep ``html``, rendered from data read at generation ``rendered_at``."""
        body = html.encode("utf-8")
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        page = PublicPage(body, etag, rendered_at)
        self._pages[key] = page
        return page


class CoursePages(LearnerPage):
    """Shared course-card data for the catalog and the course page."""

    def public_key(self, viewer: Member | None) -> tuple[str, str, str] | None:
        """Where this request's page is kept among the :class:`PublicPages`, or None.

        Only an anonymous request qualifies, and only when the page depends on nothing in its
        query but ``lang`` (a signed-in person's page shows Buy or Open and their forms).
        Dates are in the visitor's time zone (a valid IANA name, else UTC), so it is part of
        the key; the store stays bounded by the tz database's few hundred names.
        """
        if viewer is not None or any(k != "lang" for k in self.request.query_arguments):
            return None
        return (self.request.path, self.lang, self.time_zone)

    @property
    def public_pages(self) -> PublicPages:
        """This application's anonymous page store."""
        settings = self.application.settings
        pages: PublicPages | None = settings.get("learnhub_public_pages")
        if pages is None:  # the first public page this application serves
            pages = settings["learnhub_public_pages"] = PublicPages()
        return pages

    def send_public(self, key: tuple[str, str, str] | None) -> bool:
        """Answer from the store when it has this page; whether it did."""
        page = self.public_pages.get(key) if key is not None else None
        if page is None:
            return False
        self._send_public_page(page)
        return True

    def send_rendered(self, key: tuple[str, str, str] | None, html: str, rendered_at: int) -> None:
        """Send a page just rendered, keeping it first when it is an anonymous view."""
        if key is None:
            self.send_html(200, html)
            return
        self._send_public_page(self.public_pages.put(key, html, rendered_at))

    def _send_public_page(self, page: PublicPage) -> None:
        self.public_page_view = True  # see hub.service.base.log_request
        self.send_html(200, page.body, etag=page.etag)

    def course_view(self, entry: CourseEntry, viewer: Member | None) -> dict[str, Any]:
        """What a template shows about one course to ``viewer`` (with their entitlements)."""
        _ = translator(self.lang)
        course = entry.course
        course_page = f"{self.ctx.prefix}courses/{course.id}"
        return {
            "id": course.id,
            "title": course.title,
            "summary": course.summary,
            "description_paragraphs": [
                p.replace("**", "").strip() for p in course.description.split("\n\n") if p.strip()
            ],
            "instructors": course.instructors,
            "price": format_price(course.price.amount, course.price.currency, self.lang),
            "syllabus": course.syllabus,
            "outcomes": course.outcomes,
            "assignments": [
                {
                    "title": a.title,
                    "due": format_datetime(a.due, self.lang, self.time_zone) if a.due else None,
                    "due_iso": iso(a.due),
                }
                for a in course.assignments
            ],
            "deadlines": deadline_view(course, self.lang, utcnow(), self.time_zone),
            "can_open": viewer is not None and viewer.may_open(course.id),
            "teaches": viewer is not None and viewer.administers(course.id),
            "open_url": spawn_url(self.ctx.hub_base, viewer.name, course.id) if viewer else "",
            "login_url": self.login_url_for(course_page),
            "preview_url": preview_path(self.ctx.prefix, course.id) if course.preview else "",
        }


class CatalogHandler(CoursePages):
    """``GET {prefix}``: every course, for anyone."""

    async def get(self) -> None:
        """Course cards with Buy / Open / Sign in to buy."""
        viewer = self.viewer()
        key = self.public_key(viewer)
        if self.send_public(key):
            return
        rendered_at = generation()
        member = await self.member()
        courses = [self.course_view(entry, member) for entry in self.ctx.catalog]
        _ = translator(self.lang)
        html = self.page_html(
            "catalog.html",
            viewer=viewer,
            title=_("catalog_title"),
            courses=courses,
            meta=PageMeta(
                title=_("catalog_title"),
                description=_("catalog_description", count=len(courses)),
                url=self.ctx.settings.absolute_url(self.ctx.prefix),
                lang=self.lang,
            ),
        )
        self.send_rendered(key, html, rendered_at)


class CourseHandler(CoursePages):
    """``GET {prefix}courses/<id>``: one course in full."""

    async def get(self, course_id: str) -> None:
        """The course's description, syllabus, outcomes, deadlines and call to action."""
        entry = self.course_or_404(course_id)
        if entry is None:
            return
        viewer = self.viewer()
        key = self.public_key(viewer)
        if self.send_public(key):
            return
        rendered_at = generation()
        view = self.course_view(entry, await self.member())
        db = self.ctx.db
        reviews = await asyncio.to_thread(course_reviews, db, course_id)
        average, count = await asyncio.to_thread(rating_summary, db, course_id)
        mine = next((r for r in reviews if viewer and r.username == viewer.name), None)
        notices = await asyncio.to_thread(announcements, db, course_id)
        course = entry.course
        url = self.ctx.settings.absolute_url(f"{self.ctx.prefix}courses/{course_id}")
        preview = view["preview_url"]
        html = self.page_html(
            "course.html",
            viewer=viewer,
            title=entry.course.title,
            c=view,
            reviews=reviews,
            rating_average=average,
            rating_count=count,
            my_review=mine,
            review_url=f"{self.ctx.prefix}courses/{course_id}/review",
            notices=notices,
            meta=PageMeta(
                title=course.title,
                description=short_description(course.summary),
                url=url,
                lang=self.lang,
                og_type="article",
            ),
            structured_data=json_ld(
                course_data(
                    course,
                    url,
                    site_name=translator(self.lang)("site_name"),
                    site_url=self.ctx.settings.public_url,
                    preview_url=self.ctx.settings.absolute_url(preview) if preview else None,
                )
            ),
        )
        self.send_rendered(key, html, rendered_at)


class ReviewHandler(CoursePages):
    """``POST {prefix}courses/<id>/review``: a member who has the course rates it."""

    async def post(self, course_id: str) -> None:
        """Save the review, then show the course page again."""
        if self.require_learner() is None:
            return
        entry = self.course_or_404(course_id)
        if entry is None:
            return
        writer = await self.writer()
        if writer is None or not writer.may_open(course_id):
            self.show_message(403, "forbidden", "forbidden_title", "review_needs_access")
            return
        if self.over_limit("reviews"):
            return
        try:
            rating, text = validate(
                self.get_body_argument("rating", ""), self.get_body_argument("text", "")
            )
        except ReviewRejected as exc:
            self.show_message(
                400, "invalid", "review_invalid_title", "review_invalid", reason=str(exc)
            )
            return
        await asyncio.to_thread(save_review, self.ctx.db, course_id, writer.name, rating, text)
        log.info(
            "course reviewed",
            extra={"user": writer.name, "course": course_id, "rating": rating, "outcome": "saved"},
        )
        self.redirect(f"{self.ctx.prefix}courses/{course_id}#reviews", status=303)


class LoginHandler(LearnerPage):
    """``GET {prefix}login?next=...``: sign in through the Hub, then go back to ``next``."""

    def get(self) -> None:
        """Redirect to the Hub's OAuth (which returns here), or on to ``next`` once signed in."""
        if self.require_learner() is None:
            return
        target = self.get_query_argument("next", self.ctx.prefix)
        parts = urlsplit(target)
        # Only our own pages: an open redirect would make a convincing phishing link.
        if parts.scheme or parts.netloc or not target.startswith(self.ctx.prefix):
            target = self.ctx.prefix
        self.redirect(target)


def _purchase_data(db_sessions: Any, user: str) -> tuple[list[CheckoutSession], list[Entitlement]]:
    with db_sessions() as session:
        checkouts = list(
            session.scalars(sa.select(CheckoutSession).where(CheckoutSession.username == user))
        )
        ents = list(repo.entitlements(session, user))
        return checkouts, ents


class PurchasesHandler(LearnerPage):
    """``GET {prefix}purchases``: the signed-in user's checkouts and what became of them."""

    async def get(self) -> None:
        """The history, newest first, and the billing portal button for memberships."""
        user = self.require_learner()
        if user is None:
            return
        checkouts, ents = await asyncio.to_thread(_purchase_data, self.ctx.db.transaction, user)
        rows = purchase_history(checkouts, ents)
        has_customer = any(e.stripe_customer_id for e in ents)
        portal = self.ctx.settings.payments.provider == "stripe" and has_customer
        self.render_page(
            200,
            "purchases.html",
            title=translator(self.lang)("purchases_title"),
            rows=self.rows_view(rows, user),
            portal=portal,
        )

    def rows_view(self, rows: Sequence[PurchaseRow], user: str) -> list[dict[str, Any]]:
        """Rows as the template shows them."""
        _ = translator(self.lang)
        return [
            {
                "when": format_datetime(r.when, self.lang, self.time_zone),
                "when_iso": iso(r.when),
                "what": self.course_title(r.course_id, r.plan_id),
                "status": r.status,
                "status_label": _(r.status.i18n_key),
                "badge": STATUS_BADGES.get(r.status, "bg-secondary"),
                "open_url": spawn_url(self.ctx.hub_base, user, r.course_id)
                if r.status in (PurchaseStatus.ACTIVE, PurchaseStatus.PAST_DUE) and r.course_id
                else "",
            }
            for r in rows
        ]


def _customer_id(db_sessions: Any, user: str) -> str | None:
    with db_sessions() as session:
        for row in reversed(repo.entitlements(session, user)):
            if row.stripe_customer_id:
                return str(row.stripe_customer_id)
    return None


class BillingPortalHandler(LearnerPage):
    """``POST {prefix}billing-portal``: open Stripe's Customer Portal for this learner."""

    async def post(self) -> None:
        """Create a portal session for the learner's Stripe customer and go there."""
        user = self.require_learner()
        if user is None:
            return
        if self.ctx.settings.payments.provider != "stripe":
            raise web.HTTPError(404)
        customer = await asyncio.to_thread(_customer_id, self.ctx.db.transaction, user)
        if customer is None:
            self.show_message(404, "portal", "nav_purchases", "purchases_empty")
            return
        # From the configured public URL, never the request's Host header (a forged Host would
        # send the learner back from Stripe to an address of the sender's choosing).
        return_url = self.ctx.settings.absolute_url(f"{self.ctx.prefix}purchases")
        try:
            portal = await asyncio.to_thread(
                self.ctx.stripe.v1.billing_portal.sessions.create,
                {"customer": customer, "return_url": return_url},
            )
        except stripe.StripeError as exc:
            log.warning("billing portal unavailable", extra={"error": type(exc).__name__})
            self.show_message(502, "portal", "manage_membership", "portal_unavailable")
            return
        self.redirect(str(portal.url), status=303)


def page_routes(prefix: str) -> list[Any]:
    """Routes of the catalog and account pages, and of the sign-in hop (Hub OAuth)."""
    return [
        (route(prefix, "oauth_callback"), HubOAuthCallbackHandler),
        (route(prefix, "(?:courses/?)?"), CatalogHandler),
        (route(prefix, "courses/([a-z0-9-]+)"), CourseHandler),
        (route(prefix, "courses/([a-z0-9-]+)/review"), ReviewHandler),
        (route(prefix, "login"), LoginHandler),
        (route(prefix, "purchases"), PurchasesHandler),
        (route(prefix, "billing-portal"), BillingPortalHandler),
    ]
