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
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import sqlalchemy as sa

from benchmarks.common import course_entry, dashboard_rows, enrolment_week_by_week
from harness.stripe_standin import StripeStandIn
from hub.access.hub_groups import HubClient, make_access_sync
from hub.courses import Catalog, CourseEntry
from hub.service.app import make_app
from hub.service.context import ServiceContext, build_context
from hub.service.dashboard_data import OperatorData, operator_data_from_rows, read_operator_data
from hub.service.dashboards import COURSES_PER_PAGE
from hub.service.grade_figures import SERVER_GRADEBOOK_SECONDS, GradebookScores
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
    """Members ``first`` .. ``first + count - 1`` (:func:`benchmarks.common.dashboard_rows`:
    every kind of entitlement the figures treat differently, payments, server runs), written
    through the ORM as LearnHub writes them."""
    ents, payments, runs = dashboard_rows(first, count, COURSE_IDS, NOW)
    with db.transaction() as session:
        session.add_all([*ents, *payments, *runs])


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


def whole_table(
    db: Database, catalog: Catalog, settings: Settings, now: datetime = NOW, **kw: Any
) -> OperatorData:
    """The figures from every row, by their definitions (the week-by-week chart included)."""
    with db.transaction() as session:
        ents = list(session.scalars(sa.select(Entitlement)))
        payments = list(session.scalars(sa.select(Payment)))
        runs = list(session.scalars(sa.select(ServerUsage)))
    hours: dict[str, float] = {}
    for run in runs:
        seconds = (run.last_seen_at - run.started_at).total_seconds()
        hours[run.course_id] = hours.get(run.course_id, 0.0) + max(0.0, seconds) / 3600
    data = operator_data_from_rows(
        ents, payments, hours, catalog, settings.payments.plans, now=now, grace=GRACE, **kw
    )
    assert data.enrolment == enrolment_week_by_week(ents, set(catalog.ids()), now=now)
    return data


def test_operator_figures_take_the_same_few_queries_and_match_every_row(
    db: Database, many_courses: Catalog, settings: Settings
) -> None:
    plans = settings.payments.plans
    shown = COURSE_IDS[:20]
    active = [f"member{m:05d}" for m in range(0, 900, 3)] + ["not-a-member"]
    seed(db, 0, 40)
    # The first view computes the weekly rows for this catalog (it leaves out a withdrawn
    # course the weeks counted): later ones only read them.
    read_operator_data(db, many_courses, plans, now=NOW, grace=GRACE, course_ids=shown)

    def check() -> int:
        with counted(db) as statements:
            data = read_operator_data(
                db, many_courses, plans, now=NOW, grace=GRACE, course_ids=shown, active_users=active
            )
        expected = whole_table(db, many_courses, settings, course_ids=shown, active_users=active)
        assert data.members == expected.members
        assert data.per_course == expected.per_course
        assert data.active_members == expected.active_members
        assert data.enrolment == expected.enrolment
        assert data.revenue == expected.revenue
        assert data.hours == pytest.approx(expected.hours)
        return len(statements)

    counts = [check()]
    seed(db, 40, 600)  # 15 times the members, written through the ORM: the hooks keep the weeks
    counts.append(check())
    assert len(read_operator_data(db, many_courses, plans, now=NOW, grace=GRACE).enrolment) > 20
    # Revocations, reactivations and a repurchase of existing rows move the weeks too.
    with db.transaction() as session:
        rows = session.scalars(sa.select(Entitlement).where(Entitlement.id % 9 == 0)).all()
        for i, row in enumerate(rows):
            if row.status == "revoked":
                row.status = "active"
            elif i % 2:
                row.status, row.updated_at = "revoked", NOW - timedelta(days=i % 90)
            else:
                row.created_at = row.created_at - timedelta(days=30)
        session.flush()
        session.add(
            Entitlement(
                username="member00001", course_id=COURSE_IDS[5], source="purchase",
                status="active", created_at=NOW - timedelta(days=400), updated_at=NOW,
            )
        )  # fmt: skip
    counts.append(check())
    # The members, courses shown, active users, weeks, payments and runs: fixed statements
    # (the weeks' stamp, its state and rows, three counts, revenue and hours), for 40 members
    # as for 640.
    assert counts[0] == counts[1] == counts[2] <= 9, counts


def test_a_write_past_the_hooks_is_noticed_and_the_weeks_rebuilt(
    db: Database, many_courses: Catalog, settings: Settings
) -> None:
    plans = settings.payments.plans
    seed(db, 0, 60)
    read_operator_data(db, many_courses, plans, now=NOW, grace=GRACE)
    # A bulk INSERT (no ORM flush, so no hook), as a batch writer might do it.
    rows = [
        {
            "username": f"bulk{i}",
            "course_id": COURSE_IDS[i % 3],
            "source": "manual",
            "status": "active",
            "created_at": NOW - timedelta(days=40 + i),
            "updated_at": NOW - timedelta(days=40 + i),
        }
        for i in range(5)
    ]
    with db.transaction() as session:
        session.execute(sa.insert(Entitlement), rows)
    data = read_operator_data(db, many_courses, plans, now=NOW, grace=GRACE)
    assert data.enrolment == whole_table(db, many_courses, settings).enrolment


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
    await ctx.billing.aclose()


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
    data = whole_table(ctx.db, ctx.catalog, ctx.settings, now=datetime.now(UTC))
    assert f"<strong>{data.members}</strong>" in last


# -- the quality figure: a view opens only the gradebooks that changed ---------------------------


def grade(url: str, course_id: str, scores: dict[str, tuple[float, float]]) -> None:
    """Hand ``a1`` in for each learner with these manual scores of its two cells."""
    from nbgrader.api import Gradebook

    from grader.gradebook import ensure_gradebook

    ensure_gradebook(url)
    with Gradebook(url, course_id) as gb:
        if not gb.assignments:
            gb.add_assignment("a1")
            gb.add_notebook("a1", "a1")
            gb.add_grade_cell("t1", "a1", "a1", max_score=4, cell_type="code")
            gb.add_grade_cell("t2", "a1", "a1", max_score=6, cell_type="code")
        for student, (t1, t2) in scores.items():
            gb.update_or_create_student(student)
            gb.add_submission("a1", student)
            gb.find_grade("t1", "a1", "a1", student).manual_score = t1
            gb.find_grade("t2", "a1", "a1", student).manual_score = t2
        gb.db.commit()


def with_gradebooks(settings: Settings, url: str) -> Settings:
    database = settings.database.model_copy(update={"gradebook_url": url})
    return settings.model_copy(update={"database": database})


def test_quality_opens_only_the_gradebooks_that_changed(settings: Settings, tmp_path: Path) -> None:
    here = with_gradebooks(settings, f"sqlite:///{tmp_path}/{{course}}.db")
    # g3: nothing graded, no file.
    entries = [course_entry(c, assignments=1) for c in ("g1", "g2", "g3")]
    files = {c: Path(here.gradebook_url(c).removeprefix("sqlite:///")) for c in ("g1", "g2")}
    percents = {"g1": [60.0, 70.0], "g2": [60.0]}
    for course_id, path in files.items():
        path.write_bytes(b"x" * len(percents[course_id]))
    reads: list[str] = []

    def read(_settings: Settings, entry: CourseEntry) -> list[float]:
        reads.append(entry.course.id)
        return percents[entry.course.id]

    scores = GradebookScores(read=read)
    assert scores.average(here, entries) == pytest.approx(190 / 3)
    for _ in range(3):
        assert scores.average(here, entries) == pytest.approx(190 / 3)
    assert reads == ["g1", "g2"]  # nothing changed since: nothing opened again
    percents["g2"].append(100.0)  # graded: nbgrader writes the file (and its journal)
    files["g2"].write_bytes(b"xx")
    assert scores.average(here, entries) == pytest.approx(72.5)
    assert reads == ["g1", "g2", "g2"]


def test_quality_equals_the_mean_over_every_gradebook(settings: Settings, tmp_path: Path) -> None:
    """On a real nbgrader gradebook, the kept scores give the figure read from all of it."""
    from grader.reports import average_score

    here = with_gradebooks(settings, f"sqlite:///{tmp_path}/{{course}}.db")
    entries = [course_entry("g1", assignments=1), course_entry("g2", assignments=1)]
    grade(here.gradebook_url("g1"), "g1", {"ann": (4, 2), "bob": (1, 6)})
    scores = GradebookScores()
    assert scores.average(here, entries) == average_score(here, entries) == pytest.approx(65)
    assert scores.opened == 1  # g2 has no gradebook yet


def test_a_gradebook_on_a_server_is_read_again_after_a_minute(settings: Settings) -> None:
    here = with_gradebooks(settings, "postgresql://db.invalid/gradebook_{course}")
    clock = [0.0]
    reads: list[str] = []

    def read(_settings: Settings, entry: CourseEntry) -> list[float]:
        reads.append(entry.course.id)
        return [50.0, 100.0]

    scores = GradebookScores(read=read, clock=lambda: clock[0])
    entries = [course_entry("g1", assignments=1)]
    assert scores.average(here, entries) == 75.0
    clock[0] = SERVER_GRADEBOOK_SECONDS - 1
    scores.average(here, entries)
    assert reads == ["g1"]
    clock[0] = SERVER_GRADEBOOK_SECONDS + 1
    scores.average(here, entries)
    assert reads == ["g1", "g1"]
