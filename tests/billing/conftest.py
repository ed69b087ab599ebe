"""Fixtures of the billing tests: both databases, the Stripe stand-in, a fake Hub, the app."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import stripe
from sqlalchemy.engine import URL, make_url
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from harness.stripe_standin import StripeStandIn
from hub.access.hub_groups import HubClient, make_access_sync
from hub.billing.events import EventQueue
from hub.billing.fulfilment import Billing
from hub.courses import Catalog, Course, CourseEntry
from hub.errors import HubAPIError
from hub.service import base as service_base
from hub.service.app import make_app
from hub.service.context import build_context
from hub.settings import Settings
from hub.store import Database, upgrade

PG_BIN = Path("/usr/lib/postgresql/15/bin")
WEBHOOK_SECRETS = ["whsec_current_test", "whsec_previous_test"]
PREFIX = "/services/learnhub/"


# -- PostgreSQL: a throwaway cluster for the session ---------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A PostgreSQL cluster on 127.0.0.1; yields an admin URL. Fails (never skips) without it."""
    if not (PG_BIN / "initdb").exists() or shutil.which("runuser") is None:
        pytest.fail(
            f"PostgreSQL is not installed ({PG_BIN}/initdb missing): apt-get install postgresql. "
            "The billing tests must run against PostgreSQL as well as SQLite."
        )
    base = Path(tempfile.mkdtemp(prefix="learnhub-pg-"))
    data = base / "data"
    shutil.chown(base, "postgres", "postgres")
    port = _free_port()

    def as_postgres(*args: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *args], check=True, capture_output=True, text=True
        )

    try:
        as_postgres(str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres")
        as_postgres(
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(base / "log"),
            "-w",
            "-o",
            f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={base} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            "start",
        )
    except subprocess.CalledProcessError as exc:
        log = (base / "log").read_text() if (base / "log").exists() else ""
        pytest.fail(f"could not start PostgreSQL: {exc.stderr}\n{log}")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run(
            [
                "runuser",
                "-u",
                "postgres",
                "--",
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(data),
                "-m",
                "fast",
                "stop",
            ],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'learnhub.sqlite'}"
    server: str = request.getfixturevalue("postgres_server")
    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(server.replace("+psycopg", "") + "/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{server}/{name}"


class MigratedTemplates:
    """One database of each kind migrated to head per session, copied for every test.

    Running the migrations for each of the ~190 tests that take ``db`` cost most of their
    setup (alembic on SQLite and PostgreSQL, plus a 7 MB template copy per PostgreSQL
    database). The migrations still run from empty once per kind and session; each test gets
    a byte-for-byte copy of that result (SQLite's backup API, PostgreSQL's ``TEMPLATE``),
    still a database of its own.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.sqlite: Path | None = None
        self.postgres: dict[str, str] = {}

    def fill(self, db_url: str) -> None:
        """Make the empty database at ``db_url`` a migrated one."""
        url = make_url(db_url)
        if url.get_backend_name() == "sqlite" and url.database:
            self._fill_sqlite(Path(url.database))
        elif url.get_backend_name() == "postgresql" and url.database:
            self._fill_postgres(url)
        else:
            upgrade(db_url)

    def _fill_sqlite(self, target: Path) -> None:
        if target.exists():  # a test made it itself: migrate what is there
            upgrade(f"sqlite:///{target}")
            return
        if self.sqlite is None:
            template = self.folder / "migrated.sqlite"
            upgrade(f"sqlite:///{template}")
            self.sqlite = template
        with closing(sqlite3.connect(self.sqlite)) as src, closing(sqlite3.connect(target)) as dst:
            src.backup(dst)

    def _fill_postgres(self, url: URL) -> None:
        server = url.set(database="postgres").render_as_string(hide_password=False)
        admin = server.replace("+psycopg", "")
        if server not in self.postgres:
            template = "learnhub_migrated_" + uuid.uuid4().hex[:8]
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{template}"')
            upgrade(url.set(database=template).render_as_string(hide_password=False))
            self.postgres[server] = template
        # db_url made the database empty; remake it as a copy of the migrated template.
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{url.database}"')
            conn.execute(f'CREATE DATABASE "{url.database}" TEMPLATE "{self.postgres[server]}"')


@pytest.fixture(scope="session")
def migrated_templates(tmp_path_factory: pytest.TempPathFactory) -> MigratedTemplates:
    """The session's migrated databases that ``db`` copies (see :class:`MigratedTemplates`)."""
    return MigratedTemplates(tmp_path_factory.mktemp("migrated"))


@pytest.fixture
def db(db_url: str, migrated_templates: MigratedTemplates) -> Iterator[Database]:
    """The migrated database (a copy of the session's migrated template of its kind)."""
    migrated_templates.fill(db_url)
    database = Database(db_url)
    yield database
    database.dispose()


# -- catalog and settings ------------------------------------------------------------------------


def course(course_id: str, amount: int = 4900) -> CourseEntry:
    """A course entry that needs no folder on disk."""
    return CourseEntry(
        course=Course.model_validate(
            {
                "id": course_id,
                "title": f"Course {course_id}",
                "summary": "A course.",
                "price": {"amount": amount},
            }
        ),
        folder=Path("/nonexistent") / course_id,
    )


@pytest.fixture
def catalog() -> Catalog:
    """Three courses, one of them free."""
    return Catalog([course("python-101"), course("data-201"), course("intro", amount=0)])


@pytest.fixture
def settings() -> Settings:
    """Stripe payments with two rotating webhook secrets and two plans."""
    return Settings.model_validate(
        {
            "payments": {
                "provider": "stripe",
                "grace_period_days": 3,
                "plans": [
                    {
                        "id": "all-access",
                        "title": "All access",
                        "interval": "month",
                        "amount": 2900,
                    },
                    {
                        "id": "data-only",
                        "title": "Data",
                        "interval": "year",
                        "amount": 9900,
                        "courses": ["data-201"],
                    },
                ],
            },
            "secrets": {
                "stripe_secret_key": "sk_test_standin",
                "stripe_webhook_secrets": ",".join(WEBHOOK_SECRETS),
            },
        }
    )


# -- Stripe stand-in and fake Hub ----------------------------------------------------------------


@pytest.fixture
def standin() -> Iterator[StripeStandIn]:
    """The loopback Stripe API."""
    server = StripeStandIn().start()
    yield server
    server.stop()


class FakeHub(HubClient):
    """A recording in-memory JupyterHub with the methods of :class:`HubClient`."""

    def __init__(self, users: set[str]) -> None:
        self.api_url = "http://fake-hub/hub/api"
        self.users = set(users)
        self.group_members: dict[str, set[str]] = {}
        self.calls: list[tuple[Any, ...]] = []
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise HubAPIError("JupyterHub API unreachable at http://fake-hub/hub/api: down")

    async def aclose(self) -> None:
        pass

    async def groups(self) -> dict[str, set[str]]:
        self._check()
        return {name: set(members) for name, members in self.group_members.items()}

    async def user(self, name: str) -> dict[str, Any] | None:
        self._check()
        return {"name": name} if name in self.users else None

    async def create_group(self, group: str) -> None:
        self._check()
        self.calls.append(("create_group", group))
        self.group_members.setdefault(group, set())

    async def add_members(self, group: str, users: Any) -> None:
        self._check()
        users = set(users)
        unknown = sorted(users - self.users)
        if unknown:
            # As JupyterHub does: the whole request is refused, nobody is added.
            raise HubAPIError(
                f"POST /groups/{group}/users -> 400: No such user: {unknown[0]}", status=400
            )
        self.calls.append(("add", group, frozenset(users)))
        self.group_members.setdefault(group, set()).update(users)

    async def remove_members(self, group: str, users: Any) -> None:
        self._check()
        users = set(users)
        self.calls.append(("remove", group, frozenset(users)))
        self.group_members.setdefault(group, set()).difference_update(users)

    async def stop_server(self, user: str, server_name: str) -> None:
        self._check()
        self.calls.append(("stop", user, server_name))

    def adds(self, group: str) -> list[frozenset[str]]:
        """The add calls made to ``group``."""
        return [c[2] for c in self.calls if c[0] == "add" and c[1] == group]


@pytest.fixture
def fake_hub() -> FakeHub:
    """A hub that knows a few learners, hostile names included."""
    return FakeHub({"alice", "bob", "carol", "d@ve.o'neil"})


# -- the app on a real port ----------------------------------------------------------------------


class Service:
    """The running service and what tests need to drive it."""

    def __init__(
        self, url: str, billing: Billing, events: EventQueue, http: httpx.AsyncClient
    ) -> None:
        self.url = url
        self.billing = billing
        self.events = events
        self.http = http

    @property
    def webhook(self) -> str:
        return f"{self.url}{PREFIX}stripe/webhook"

    async def send(
        self,
        event: dict[str, Any],
        *,
        secret: str = WEBHOOK_SECRETS[0],
        timestamp: int | None = None,
    ) -> httpx.Response:
        """Sign ``event`` like Stripe and POST it to the webhook."""
        payload = json.dumps(event)
        header = stripe.WebhookSignature.generate_signature_header(
            payload, secret, timestamp if timestamp is not None else int(time.time())
        )
        return await self.http.post(
            self.webhook, content=payload.encode(), headers={"Stripe-Signature": header}
        )

    async def send_all(self, events: list[dict[str, Any]]) -> None:
        """Deliver events in order; each must be accepted. Then wait until they are processed
        and the access sync that followed them is done."""
        for event in events:
            response = await self.send(event)
            assert response.status_code == 200, response.text
        await self.processed()

    async def processed(self, timeout: float = 10) -> None:
        """Wait until every accepted event is processed and its access sync has run."""
        await asyncio.wait_for(self.events.join(), timeout)


@pytest.fixture
def test_user_header(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests say who the learner is with an ``X-Test-User`` header instead of Hub OAuth."""

    def learner_name(self: service_base.LearnerHandler) -> str | None:
        return self.request.headers.get("X-Test-User")

    monkeypatch.setattr(service_base.LearnerHandler, "learner_name", learner_name)


async def start_app(app: Any) -> tuple[HTTPServer, str]:
    """Serve ``app`` on a free loopback port."""
    sockets = bind_sockets(0, "127.0.0.1")
    server = HTTPServer(app)
    server.add_sockets(sockets)
    port = sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}"


@pytest.fixture
async def service(
    settings: Settings,
    catalog: Catalog,
    db: Database,
    standin: StripeStandIn,
    fake_hub: FakeHub,
    test_user_header: None,
) -> AsyncIterator[Service]:
    """The real tornado app on a free port, wired to the stand-in and the fake Hub."""
    sync = make_access_sync(db, catalog, settings, fake_hub)
    ctx = build_context(settings, catalog, db, standin.client(), sync, prefix=PREFIX)
    events = ctx.events
    events.retry_initial = 0.05  # Stripe-down tests retry within moments
    await events.start()
    server, url = await start_app(make_app(ctx))
    async with httpx.AsyncClient(timeout=30) as http:
        yield Service(url, ctx.billing, events, http)
    server.stop()
    await server.close_all_connections()
    await events.aclose()
    await ctx.billing.aclose()
