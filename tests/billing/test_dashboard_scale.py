"""The operator dashboard at many members: bounded work per view, the same figures.

At 10,000 members the dashboard took 8.5 s p50 (benchmarks/scale.py): it read every
entitlement and payment as objects, compared every entitlement with every week, and listed
every running server and every recently active member from the Hub on each view. These tests
pin what replaced that, on SQLite and PostgreSQL:

- the database work of a view is a fixed number of statements, however many members, payments
  and server runs there are, and its figures equal the old whole-table computation;
- the Hub is asked for one page of one user on a repeated view, not for every running server
  or active member, and a server that started since the last sample is still counted;
- with more courses than fit a chart, the per-course charts page.
"""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import sqlalchemy as sa

from harness.stripe_standin import StripeStandIn
from hub.access.hub_groups import HubClient, make_access_sync
from hub.courses import Catalog
from hub.entitlements import desired_membership
from hub.service.app import make_app
from hub.service.context import ServiceContext, build_context
from hub.service.dashboard_data import read_operator_data
from hub.service.dashboards import COURSES_PER_PAGE
from hub.service.reports import DatedEntitlement, revenue_from_payments, week_start
from hub.settings import Settings
from hub.store import Database, Entitlement, Payment
from hub.store.usage_models import ServerUsage
from tests.billing.conftest import PREFIX, FakeHub, course, start_app
from tests.billing.test_service_edges import hub_user_from_headers  # noqa: F401 (fixture)

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
GRACE = timedelta(days=3)
#: The catalog: the fixture's plan courses and enough others to need three chart pages.
COURSE_IDS = ["python-101", "data-201", *[f"course-{i:02d}" for i in range(43)]]


@pytest.fixture
def many_courses() -> Catalog:
    return Catalog([course(c) for c in COURSE_IDS])


def seed(db: Database, first: int, count: int) -> None:
    """Members ``first`` .. ``first + count - 1``: every kind of entitlement the figures treat
    differently (revoked, past due in and out of grace, pending, plans, a withdrawn course),
    payments in two currencies with refunds, and server runs."""
    rng = random.Random(first)
    ents: list[Entitlement] = []
    payments: list[Payment] = []
    runs: list[ServerUsage] = []
    for m in range(first, first + count):
        name = f"member{m:05d}"
        created = NOW - timedelta(days=rng.randint(0, 200), minutes=rng.randint(0, 1440))
        status, period_end, updated = "active", None, created
        if m % 7 == 0:
            status, updated = "revoked", created + timedelta(days=rng.randint(0, 60))
        elif m % 11 == 0:
            status, period_end = "past_due", NOW - timedelta(days=rng.choice([1, 10]))
        elif m % 17 == 0:
            status = "pending"
        course_id = COURSE_IDS[m % len(COURSE_IDS)] if m % 23 else "withdrawn-course"
        ents.append(
            Entitlement(
                username=name,
                course_id=course_id,
                source="purchase",
                status=status,
                period_end=period_end,
                created_at=created,
                updated_at=updated,
            )
        )
        if m % 5 == 0:  # a second course, sometimes the same one again (a repurchase)
            again = COURSE_IDS[(m // 5) % len(COURSE_IDS)]
            ents.append(
                Entitlement(
                    username=name,
                    course_id=again,
                    source="manual",
                    status="active",
                    created_at=created + timedelta(days=3),
                    updated_at=created + timedelta(days=3),
                )
            )
        if m % 13 == 0:
            ents.append(
                Entitlement(
                    username=name,
                    plan_id=rng.choice(["all-access", "data-only"]),
                    source="subscription",
                    status="active",
                    created_at=created,
                    updated_at=created,
                )
            )
        if m % 3 == 0:
            currency = "eur" if m % 2 else "usd"
            payments.append(
                Payment(
                    stripe_id=f"cs_{m}",
                    kind="checkout" if m % 13 else "invoice",
                    username=name,
                    course_id=course_id if m % 13 else None,
                    currency=currency,
                    amount=4900 + m,
                    amount_refunded=(4900 + m if m % 9 == 0 else 0),
                    paid_at=created,
                    updated_at=created,
                )
            )
        if m % 4 == 0:
            started = NOW - timedelta(hours=rng.randint(1, 100))
            seen = started + timedelta(minutes=rng.randint(0, 300))
            runs.append(
                ServerUsage(
                    username=name, course_id=course_id, started_at=started, last_seen_at=seen
                )
            )
    with db.transaction() as session:
        session.add_all([*ents, *payments, *runs])


def enrolment_week_by_week(
    entitlements: list[DatedEntitlement], course_ids: set[str], *, now: datetime
) -> list[tuple[str, int]]:
    """The chart's definition, week by week (what the dashboard computed before)."""
    relevant = [
        e
        for e in entitlements
        if e.status != "pending" and (e.course_id in course_ids or e.plan_id is not None)
    ]
    if not relevant:
        return []
    week = week_start(min(e.created_at for e in relevant))
    series = []
    while week <= week_start(now):
        end = datetime.combine(week + timedelta(days=7), datetime.min.time(), tzinfo=UTC)
        users = {
            e.username
            for e in relevant
            if e.created_at < end and (e.status != "revoked" or e.updated_at >= end)
        }
        series.append((week.isoformat(), len(users)))
        week += timedelta(days=7)
    return series


@contextmanager
def counted(db: Database) -> Iterator[list[str]]:
    """The SQL statements ``db`` runs inside the block."""
    statements: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    sa.event.listen(db.engine, "before_cursor_execute", note)
    try:
        yield statements
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", note)


def test_operator_figures_take_the_same_few_queries_and_match_every_row(
    db: Database, many_courses: Catalog, settings: Settings
) -> None:
    plans = settings.payments.plans
    counts = []
    for first, count in ((0, 40), (40, 600)):
        seed(db, first, count)
        with counted(db) as statements:
            data = read_operator_data(db, many_courses, plans, now=NOW, grace=GRACE)
        counts.append(len(statements))
        with db.transaction() as session:
            ents = list(session.scalars(sa.select(Entitlement)))
            payments = list(session.scalars(sa.select(Payment)))
            runs = list(session.scalars(sa.select(ServerUsage)))
        assert data.desired == desired_membership(ents, many_courses, plans, now=NOW, grace=GRACE)
        assert data.enrolment == enrolment_week_by_week(ents, set(COURSE_IDS), now=NOW)
        assert len(data.enrolment) > 20  # many weeks, with revocations among them
        assert data.revenue == revenue_from_payments(payments)
        hours: dict[str, float] = {}
        for run in runs:
            seconds = (run.last_seen_at - run.started_at).total_seconds()
            hours[run.course_id] = hours.get(run.course_id, 0.0) + max(0.0, seconds) / 3600
        assert data.hours == pytest.approx(hours)
    # Entitlements, revenue and hours: one statement each (plus the transaction's own, if any),
    # for 40 members as for 640.
    assert counts[0] == counts[1] <= 5, counts


# -- the page, with a Hub that counts what it is asked -------------------------------------------


class CountingHub:
    """A JupyterHub ``/hub/api/users`` over an httpx transport: pages, state and sort as
    JupyterHub answers them; every request is recorded."""

    def __init__(self, members: int, running: int) -> None:
        self.users = [f"member{m:05d}" for m in range(members)]
        self.started = {name: NOW - timedelta(hours=1) for name in self.users[:running]}
        self.requests: list[httpx.URL] = []

    def model(self, name: str) -> dict[str, Any]:
        servers = {}
        if name in self.started:
            servers[COURSE_IDS[2]] = {
                "ready": True,
                "started": self.started[name].isoformat().replace("+00:00", "Z"),
            }
        seen = datetime.now(UTC) if name in self.started else None
        return {
            "name": name,
            "servers": servers,
            "last_activity": seen.isoformat().replace("+00:00", "Z") if seen else None,
        }

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request.url)
        assert request.url.path == "/hub/api/users", request.url
        query = {k: v[0] for k, v in parse_qs(urlsplit(str(request.url)).query).items()}
        names = self.users
        if query.get("state") == "active":
            names = [n for n in names if n in self.started]
        if query.get("sort") == "-last_activity":
            names = sorted(names, key=lambda n: n not in self.started)
        offset, limit = int(query.get("offset", 0)), min(int(query.get("limit", 200)), 200)
        page = names[offset : offset + limit]
        following = {"offset": offset + limit} if offset + limit < len(names) else None
        body = {
            "items": [self.model(n) for n in page],
            "_pagination": {"offset": offset, "limit": limit, "total": len(names)},
        }
        body["_pagination"]["next"] = following
        return httpx.Response(200, content=json.dumps(body).encode())


@pytest.fixture
async def dashboard(
    settings: Settings,
    many_courses: Catalog,
    db: Database,
    standin: StripeStandIn,
    hub_user_from_headers: None,  # noqa: F811
) -> AsyncIterator[tuple[ServiceContext, CountingHub, httpx.AsyncClient, str]]:
    """The service app with a Hub client whose Hub counts its requests."""
    hub = CountingHub(members=30, running=5)
    client = HubClient(
        "http://hub.test/hub/api", "token", transport=httpx.MockTransport(hub.handle)
    )
    sync = make_access_sync(db, many_courses, settings, FakeHub(set()))
    ctx = build_context(
        settings, many_courses, db, standin.client(), sync, prefix=PREFIX, hub_client=client
    )
    server, url = await start_app(make_app(ctx))
    async with httpx.AsyncClient(timeout=30) as http:
        yield ctx, hub, http, f"{url}{PREFIX}admin"
    server.stop()
    await server.close_all_connections()
    await client.aclose()
    ctx.billing.close()


ADMIN = {"X-Test-User": "root", "X-Test-Admin": "1"}


async def test_repeated_views_ask_the_hub_one_small_question_and_count_new_servers(
    dashboard: tuple[ServiceContext, CountingHub, httpx.AsyncClient, str],
) -> None:
    ctx, hub, http, url = dashboard
    seed(ctx.db, 0, 30)
    first = await http.get(url, headers=ADMIN)
    assert first.status_code == 200, first.text
    assert len(hub.requests) >= 2  # the first view samples usage and reads activity

    # The platform grows: 400 members, 250 running servers (2 pages of the Hub's 200).
    seed(ctx.db, 30, 370)
    hub.users = [f"member{m:05d}" for m in range(400)]
    hub.started = {name: NOW - timedelta(hours=2) for name in hub.users[:250]}
    grown = await http.get(url, headers=ADMIN)
    assert grown.status_code == 200
    with ctx.db.transaction() as session:
        sampled = session.scalar(sa.select(sa.func.count()).select_from(ServerUsage))
    assert sampled is not None and sampled >= 250  # the new servers were sampled on view

    for _ in range(3):
        hub.requests.clear()
        with counted(ctx.db) as statements:
            again = await http.get(url, headers=ADMIN)
        assert again.status_code == 200
        # One page of one user (the count of users with a running server), nothing else.
        assert [str(u.params) for u in hub.requests] == ["state=active&limit=1"]
        steady = len(statements)
    seed(ctx.db, 400, 400)
    hub.users = [f"member{m:05d}" for m in range(800)]
    with counted(ctx.db) as statements:
        await http.get(url, headers=ADMIN)
    assert len(statements) == steady  # 800 members: the same statements as 400

    # A server starts: the next view samples again and meters it.
    hub.started["member00799"] = NOW - timedelta(minutes=1)
    hub.requests.clear()
    await http.get(url, headers=ADMIN)
    assert any(u.params.get("state") == "active" and "offset" in u.params for u in hub.requests)
    with ctx.db.transaction() as session:
        runs = session.scalars(
            sa.select(ServerUsage.course_id).where(ServerUsage.username == "member00799")
        ).all()
    assert COURSE_IDS[2] in runs


async def test_per_course_charts_page_through_the_courses(
    dashboard: tuple[ServiceContext, CountingHub, httpx.AsyncClient, str],
) -> None:
    ctx, _hub, http, url = dashboard
    seed(ctx.db, 0, 100)
    first = (await http.get(url, headers=ADMIN)).text
    assert f"Courses 1\u2013{COURSES_PER_PAGE} of {len(COURSE_IDS)}" in first
    assert f"<td>{COURSE_IDS[0]}</td>" in first and f"<td>{COURSE_IDS[20]}</td>" not in first
    assert 'rel="next" href="/services/learnhub/admin?page=2' in first and 'rel="prev"' not in first
    last = (await http.get(url + "?page=3", headers=ADMIN)).text
    assert f"Courses 41\u2013{len(COURSE_IDS)} of {len(COURSE_IDS)}" in last
    assert f"<td>{COURSE_IDS[-1]}</td>" in last and f"<td>{COURSE_IDS[0]}</td>" not in last
    assert 'rel="prev"' in last and 'rel="next"' not in last
    # Not a page number, or past the end: the first or the last page, never an error.
    assert "Courses 1\u2013" in (await http.get(url + "?page=x", headers=ADMIN)).text
    assert "Courses 41\u2013" in (await http.get(url + "?page=99", headers=ADMIN)).text
    chinese = (await http.get(url + "?page=2&lang=zh-CN", headers=ADMIN)).text
    assert "第 21\u201340 门课程\uff0c共 45 门" in chinese
    # N counts every member with access, whichever page of courses is shown.
    data = read_operator_data(
        ctx.db, ctx.catalog, ctx.settings.payments.plans, now=datetime.now(UTC), grace=GRACE
    )
    members = set().union(*data.desired.values())
    assert f"<strong>{len(members)}</strong>" in last
