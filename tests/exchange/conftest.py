"""Fixtures of the exchange tests: both databases, the exchange served on a real port."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from tornado import web

from grader.exchange.auth import StaticAuthorizer
from grader.exchange.server import exchange_routes
from grader.exchange.storage import ExchangeLimits, ExchangeStorage
from harness.archives import targz, untargz
from hub.access.policy import Member
from hub.store import Database
from tests.billing.conftest import db, db_url, migrated_templates, postgres_server, start_app

__all__ = ["db", "db_url", "migrated_templates", "postgres_server", "targz", "untargz"]

#: The service prefix under the hostile hub base URL the platform tests use.
PREFIX = "/@/space%20word/services/learnhub/"
COURSE = "python-foundations"
OTHER_COURSE = "algorithms-in-python"
#: Small on purpose, so the 413 test stays fast.
LIMIT = 256 * 1024
#: The exchange's limits in these tests: the defaults, with small sizes so tests stay fast.
LIMITS = ExchangeLimits(
    archive_bytes=LIMIT,
    entries=2000,
    unpacked_bytes=LIMIT * 10,
    file_bytes=LIMIT * 5,
    kept_submissions=50,
    learner_assignment_bytes=LIMIT * 100,
    course_bytes=LIMIT * 1000,
    upload_workers=2,
)

CALLERS = {
    "tok-alice": Member("alice", groups=frozenset({f"course-{COURSE}"})),
    "tok-bob": Member("bob", groups=frozenset({f"course-{COURSE}"})),
    "tok-dave": Member("d@ve.o'neil", groups=frozenset({f"course-{COURSE}"})),
    "tok-eve": Member("eve", groups=frozenset({f"course-{OTHER_COURSE}"})),
    "tok-inst": Member("ines", groups=frozenset({f"instructors-{COURSE}"})),
    "tok-admin": Member("root", admin=True),
}


@dataclass
class Exchange:
    """The running exchange and an HTTP client."""

    base: str  # URL of {prefix}exchange/v1/courses/
    storage: ExchangeStorage
    http: httpx.AsyncClient

    def url(self, path: str, course: str = COURSE) -> str:
        return f"{self.base}{course}/{path}"

    async def call(
        self, method: str, path: str, token: str | None, *, course: str = COURSE, **kw: object
    ) -> httpx.Response:
        headers = {"Authorization": f"token {token}"} if token else {}
        return await self.http.request(
            method,
            self.url(path, course),
            headers=headers,
            **kw,  # type: ignore[arg-type]
        )


@pytest.fixture
async def exchange(db: Database, tmp_path: Path) -> AsyncIterator[Exchange]:
    """The exchange routes in a tornado app like the service's (XSRF on), on a free port."""
    storage = ExchangeStorage(
        tmp_path / "exchange", db, courses={COURSE, OTHER_COURSE}, limits=LIMITS
    )
    routes = exchange_routes(PREFIX, storage=storage, authorizer=StaticAuthorizer(CALLERS))
    app = web.Application(routes, xsrf_cookies=True, cookie_secret=b"x" * 32)
    server, url = await start_app(app)
    async with httpx.AsyncClient(timeout=30) as http:
        yield Exchange(f"{url}{PREFIX}exchange/v1/courses/", storage, http)
    server.stop()
    await server.close_all_connections()
