"""The service's edges over real HTTP: public URL, security headers, rate limits, and writes
decided from the database's entitlements.

The real tornado app runs on a loopback port (as in ``conftest.service``). Who is signed in is
the Hub's user model that JupyterHub's ``HubAuth`` would hand the service, given here by test
headers: ``X-Test-User``, ``X-Test-Groups`` (the Hub's cached groups), ``X-Test-Admin``.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from harness.stripe_standin import StripeStandIn
from hub.access.hub_groups import make_access_sync
from hub.courses import Catalog
from hub.errors import SettingsError
from hub.service import base as service_base
from hub.service.app import make_app
from hub.service.context import ServiceContext, build_context
from hub.service.ratelimit import RateLimiter
from hub.settings import Settings, load_settings
from hub.store import Database
from hub.store import repository as repo
from tests.billing.conftest import PREFIX, FakeHub, start_app

PUBLIC = "https://learn.example.org/"
LIMIT = 2
SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


class Edge:
    """The running service, its context and an HTTP client."""

    def __init__(self, url: str, ctx: ServiceContext, http: httpx.AsyncClient) -> None:
        self.url = url
        self.ctx = ctx
        self.http = http

    async def get(self, path: str, user: str | None = None, **headers: str) -> httpx.Response:
        """GET ``{prefix}path`` as ``user`` (anonymous when None)."""
        return await self.http.get(self.url + PREFIX + path, headers=_who(user, headers))

    async def post(
        self, path: str, user: str | None = None, data: dict[str, str] | None = None, **headers: str
    ) -> httpx.Response:
        """POST a form to ``{prefix}path`` as ``user``."""
        return await self.http.post(
            self.url + PREFIX + path, data=data or {}, headers=_who(user, headers)
        )

    def grant(self, user: str, course_id: str) -> None:
        """An operator's grant, as ``learnhub grant`` records it."""
        with self.ctx.db.transaction() as session:
            repo.set_manual_access(session, user, course_id, active=True, reason="test")

    def revoke(self, user: str, course_id: str) -> None:
        """An operator's revoke, as ``learnhub revoke`` records it (the Hub not yet synced)."""
        with self.ctx.db.transaction() as session:
            repo.revoke_course(session, user, course_id, reason=repo.OPERATOR_REVOKED)


def _who(user: str | None, headers: dict[str, str]) -> dict[str, str]:
    extra = {k.replace("_", "-"): v for k, v in headers.items()}
    return ({"X-Test-User": user} if user else {}) | extra


@pytest.fixture
def hub_user_from_headers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Hub user model (name, groups, admin) comes from the test headers, not OAuth."""

    async def prepare(self: service_base.LearnerHandler) -> None:
        name = self.request.headers.get("X-Test-User")
        groups = [g for g in self.request.headers.get("X-Test-Groups", "").split(",") if g]
        admin = self.request.headers.get("X-Test-Admin") == "1"
        self._hub_auth_user_cache = (
            {"name": name, "groups": groups, "admin": admin} if name else None
        )

    monkeypatch.setattr(service_base.LearnerHandler, "prepare", prepare)


@pytest.fixture
async def edge(
    settings: Settings,
    catalog: Catalog,
    db: Database,
    standin: StripeStandIn,
    fake_hub: FakeHub,
    hub_user_from_headers: None,
) -> AsyncIterator[Edge]:
    """The service with a configured public URL and small limits (LIMIT per hour)."""
    data = settings.model_dump() | {"secrets": settings.secrets.model_dump()}
    data["hub"] = data["hub"] | {"public_url": PUBLIC}
    limits = {"checkout": LIMIT, "checkout_success": LIMIT, "qa": LIMIT, "reviews": LIMIT}
    data["limits"] = {"window_seconds": 3600, **limits}
    configured = Settings.model_validate(data)
    sync = make_access_sync(db, catalog, configured, fake_hub)
    ctx = build_context(configured, catalog, db, standin.client(), sync, prefix=PREFIX)
    await ctx.events.start()
    server, url = await start_app(make_app(ctx))
    async with httpx.AsyncClient(timeout=30) as http:
        yield Edge(url, ctx, http)
    server.stop()
    await server.close_all_connections()
    await ctx.events.aclose()
    await ctx.billing.aclose()


# -- one public URL ------------------------------------------------------------------------------


async def test_absolute_links_use_the_public_url_not_the_host_header(
    edge: Edge, standin: StripeStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    forged = {"Host": "evil.example", "Accept": "application/json"}
    created = await edge.http.post(
        f"{edge.url}{PREFIX}checkout/python-101", headers={"X-Test-User": "alice", **forged}
    )
    assert created.status_code == 200, created.text
    session = standin.store.objects[created.json()["url"].rsplit("/", 1)[1]]
    base = f"https://learn.example.org{PREFIX}"
    assert session["success_url"] == base + "checkout/success?session_id={CHECKOUT_SESSION_ID}"
    assert session["cancel_url"] == base + "checkout/cancel"

    # The billing portal's return URL (Stripe's portal is not in the stand-in: record the call).
    portal_calls: list[dict[str, Any]] = []

    def create_portal(params: dict[str, Any]) -> Any:
        portal_calls.append(params)
        return SimpleNamespace(url="https://billing.stripe.test/p/session")

    monkeypatch.setattr(edge.ctx.stripe.v1.billing_portal.sessions, "create", create_portal)
    with edge.ctx.db.transaction() as s:
        repo.set_manual_access(s, "alice", "python-101", active=True, reason="test")
        for row in repo.entitlements(s, "alice"):
            row.stripe_customer_id = "cus_alice"
    portal = await edge.http.post(
        f"{edge.url}{PREFIX}billing-portal",
        headers={"X-Test-User": "alice", "Host": "evil.example"},
    )
    assert portal.status_code == 303, portal.text
    assert portal_calls == [{"customer": "cus_alice", "return_url": base + "purchases"}]


# -- security headers ----------------------------------------------------------------------------


def assert_secured(response: httpx.Response, *, nonce_script: bool = False) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, (response.request.url, name)
    csp = response.headers.get("Content-Security-Policy", "")
    assert "frame-ancestors 'none'" in csp, response.request.url
    assert "'unsafe-inline'" not in csp
    if nonce_script:
        # The instructor dashboard's one poller (hub/service/grading.py), by its nonce only.
        nonce = re.search(r'<script nonce="([^"]+)">', response.text)
        assert nonce is not None and response.text.count("<script") == 1
        assert f"script-src 'nonce-{nonce.group(1)}'; connect-src 'self';" in csp
    else:
        assert "script-src 'none'" in csp
    # Forms lead only here, to the public URL, or to Stripe's hosted pages.
    assert "form-action 'self' https://learn.example.org https://checkout.stripe.com" in csp


async def test_every_page_and_answer_carries_the_security_headers(edge: Edge) -> None:
    edge.grant("alice", "python-101")
    teacher = {"X_Test_Groups": "instructors-python-101"}
    answers = {
        "catalog": await edge.get(""),
        "course page": await edge.get("courses/python-101"),
        "signed-in catalog": await edge.get("", "alice"),
        "Q&A": await edge.get("courses/python-101/questions", "alice"),
        "instructor dashboard": await edge.get("instructor/python-101", "ted", **teacher),
        "operator dashboard": await edge.get("admin", "root", X_Test_Admin="1"),
        "purchases": await edge.get("purchases", "alice"),
        "message": await edge.get("checkout/cancel", "alice"),
        "refusal": await edge.get("courses/python-101/questions", "bob"),
        "unknown course": await edge.get("courses/no-such-course"),
        "unknown path": await edge.get("no/such/page"),
        "JSON": await edge.post(
            "checkout/python-101", "bob", Accept="application/json", X_Test_Groups=""
        ),
    }
    expected = {"refusal": 403, "unknown course": 404, "unknown path": 404}
    for what, response in answers.items():
        assert response.status_code == expected.get(what, 200), (what, response.text)
        assert_secured(response, nonce_script=what == "instructor dashboard")
    assert "LearnHub" in answers["unknown path"].text  # the service's page, not tornado's


async def test_the_style_block_is_the_one_the_policy_allows(edge: Edge) -> None:
    page = await edge.get("")
    style = re.search(r"<style>(.*?)</style>", page.text, re.S)
    assert style is not None
    digest = base64.b64encode(hashlib.sha256(style.group(1).encode()).digest()).decode()
    assert f"'sha256-{digest}'" in page.headers["Content-Security-Policy"]
    assert 'style="' not in page.text and "<script" not in page.text


# -- rate limits ---------------------------------------------------------------------------------


async def test_reviews_are_rate_limited_per_member(edge: Edge) -> None:
    for user in ("alice", "bob"):
        edge.grant(user, "python-101")
    review = {"rating": "5", "text": "Good."}
    for _ in range(LIMIT):
        saved = await edge.post("courses/python-101/review", "alice", review)
        assert saved.status_code == 303, saved.text
    limited = await edge.post("courses/python-101/review", "alice", review)
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["Retry-After"]) <= 3600 // LIMIT
    assert "Too many requests" in limited.text
    assert_secured(limited)
    zh = await edge.post("courses/python-101/review", "alice", review, Accept_Language="zh-CN")
    assert zh.status_code == 429 and "请求过于频繁" in zh.text
    other = await edge.post("courses/python-101/review", "bob", review)
    assert other.status_code == 303, other.text


async def test_qa_writes_are_rate_limited_together(edge: Edge) -> None:
    for user in ("alice", "bob"):
        edge.grant(user, "python-101")
    asked = await edge.post("courses/python-101/questions", "alice", {"title": "T", "body": "B"})
    assert asked.status_code == 303, asked.text
    question = asked.headers["Location"].rsplit("/", 1)[1]
    answered = await edge.post(f"courses/python-101/questions/{question}", "alice", {"body": "A"})
    assert answered.status_code == 303, answered.text
    limited = await edge.post(
        "courses/python-101/questions",
        "alice",
        {"title": "T2", "body": "B"},
        Accept="application/json",
    )
    assert limited.status_code == 429
    assert limited.json()["error"] == "too many requests"
    assert limited.headers["Retry-After"] == str(limited.json()["retry_after"])
    other = await edge.post(f"courses/python-101/questions/{question}", "bob", {"body": "Me"})
    assert other.status_code == 303, other.text


async def test_checkout_and_success_page_are_rate_limited(edge: Edge) -> None:
    json_caller = {"Accept": "application/json"}
    for _ in range(LIMIT):
        created = await edge.post("checkout/python-101", "alice", **json_caller)
        assert created.status_code == 200, created.text
    limited = await edge.post("checkout/python-101", "alice", **json_caller)
    assert limited.status_code == 429 and "Retry-After" in limited.headers
    assert (await edge.post("checkout/python-101", "bob", **json_caller)).status_code == 200
    # Every success-page visit asks Stripe about the id it is given.
    for _ in range(LIMIT):
        unknown = await edge.get("checkout/success?session_id=cs_nothing", "carol")
        assert unknown.status_code in (404, 502), unknown.text
    limited = await edge.get("checkout/success?session_id=cs_nothing", "carol")
    assert limited.status_code == 429 and "Too many requests" in limited.text


# -- writes check the database ---------------------------------------------------------------------


async def test_a_revoked_member_cannot_write_while_the_hub_still_lists_them(edge: Edge) -> None:
    stale = {"X_Test_Groups": "course-python-101"}  # the Hub's groups, not yet synced
    for user in ("alice", "bob"):
        edge.grant(user, "python-101")
    edge.revoke("alice", "python-101")
    ask = {"title": "Still here?", "body": "Refunded a minute ago."}
    refused = await edge.post("courses/python-101/questions", "alice", ask, **stale)
    assert refused.status_code == 403 and "for the members who have it" in refused.text
    review = await edge.post(
        "courses/python-101/review", "alice", {"rating": "1", "text": "x"}, **stale
    )
    assert review.status_code == 403 and "Only members who have this course" in review.text
    # An entitled member's writes work (with or without the Hub's group).
    asked = await edge.post("courses/python-101/questions", "bob", ask, **stale)
    assert asked.status_code == 303, asked.text
    reviewed = await edge.post("courses/python-101/review", "bob", {"rating": "4", "text": "ok"})
    assert reviewed.status_code == 303, reviewed.text
    # An instructor writes without an entitlement (their group, or course.yaml).
    answer = await edge.post(
        asked.headers["Location"].removeprefix(PREFIX),
        "ted",
        {"body": "Yes."},
        X_Test_Groups="instructors-python-101",
    )
    assert answer.status_code == 303, answer.text


def test_limits_refill_over_the_window_and_bad_limits_are_refused(tmp_path: Path) -> None:
    now = [0.0]
    limiter = RateLimiter({"qa": (2, 60)}, clock=lambda: now[0])
    assert [limiter.take("qa", "ann") for _ in range(2)] == [0.0, 0.0]
    assert limiter.take("qa", "ann") == pytest.approx(30.0)  # one token every 30 s
    assert limiter.take("qa", "bob") == 0.0
    now[0] = 30.0
    assert limiter.take("qa", "ann") == 0.0
    config = tmp_path / "learnhub.yaml"
    config.write_text("limits:\n  qa: 0\n", encoding="utf-8")
    with pytest.raises(SettingsError, match=r"limits\.qa"):
        load_settings(config, {})
