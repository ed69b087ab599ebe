"""The real :class:`HubAuthorizer` against a real JupyterHub (local spawner, no containers).

The service token is the LearnHub service's own (``LEARNHUB_SERVICE_TOKEN``, role
``learnhub-service``), so this also proves that role's scopes are enough. Learner tokens are
deliberately narrow (like a course server's token): identity comes from ``GET /user`` with the
caller's token, groups from the service's token.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from tornado import web

from grader.api import grades_routes
from grader.exchange.auth import HubAuthorizer, MissingScope
from grader.exchange.server import exchange_routes
from grader.exchange.storage import ExchangeStorage
from hub.access.hub_groups import HubClient
from hub.access.scopes import LEARNHUB_SCOPE, SERVER_TOKEN_SCOPES
from hub.courses import Catalog
from hub.settings import load_settings
from hub.store import Database, upgrade
from tests.billing.conftest import start_app
from tests.exchange.conftest import PREFIX, targz
from tests.harness import ROOT, HubProcess, hub_settings

#: Not a catalog course, so the service's membership reconciliation leaves its groups alone.
COURSE = "exchange-probe"


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[HubProcess, str]]:
    workdir = tmp_path_factory.mktemp("exchange-hub")
    service_token = secrets.token_hex(32)
    process = HubProcess(
        workdir=workdir,
        settings=hub_settings(workdir, courses_dir=ROOT / "courses", backend="local"),
        extra_env={"LEARNHUB_SERVICE_TOKEN": service_token},
    )
    process.start()
    try:
        for user in ("alice", "eve", "ines"):
            assert process.api("POST", f"/users/{user}").status_code in (201, 409)
        for group, members in (
            (f"course-{COURSE}", ["alice"]),
            (f"instructors-{COURSE}", ["ines"]),
        ):
            assert process.api("POST", f"/groups/{group}").status_code in (201, 409)
            response = process.api("POST", f"/groups/{group}/users", json={"users": members})
            assert response.status_code == 200, response.text
        yield process, service_token
    finally:
        process.stop()


def user_token(hub: HubProcess, user: str, scopes: list[str] | None = None) -> str:
    """A token as narrow as a course server's: it cannot even read its owner's groups.

    By default it carries what a course server's token carries (SERVER_TOKEN_SCOPES, for a
    server the user does not have); ``scopes`` replaces that.
    """
    if scopes is None:
        scopes = [f"users:activity!user={user}", LEARNHUB_SCOPE]
    response = hub.api(
        "POST", f"/users/{user}/tokens", json={"scopes": scopes, "note": "exchange test"}
    )
    assert response.status_code == 201, response.text
    return str(response.json()["token"])


@pytest.fixture
async def authorizer(hub: tuple[HubProcess, str]) -> AsyncIterator[HubAuthorizer]:
    process, service_token = hub
    client = HubClient(process.api_url, service_token)
    auth = HubAuthorizer(client, cache_seconds=0.5)
    yield auth
    await auth.aclose()
    await client.aclose()


async def test_identifies_users_services_and_bad_tokens(
    hub: tuple[HubProcess, str], authorizer: HubAuthorizer
) -> None:
    process, service_token = hub
    alice = await authorizer.identify(user_token(process, "alice"))
    assert alice is not None and alice.name == "alice" and not alice.admin
    assert alice.may_open(COURSE) and not alice.administers(COURSE)
    ines = await authorizer.identify(user_token(process, "ines"))
    assert ines is not None and ines.administers(COURSE)
    eve = await authorizer.identify(user_token(process, "eve"))
    assert eve is not None and not eve.may_open(COURSE)
    assert await authorizer.identify("not-a-token") is None
    # The operator's admin token (service `learnhub-admin`, role admin) acts as an admin...
    operator = await authorizer.identify(process.admin_token)
    assert operator is not None and operator.kind == "service" and operator.admin
    # ...but the LearnHub service's own token is not even let in: it lacks LearnHub's scope.
    with pytest.raises(MissingScope):
        await authorizer.identify(service_token)


async def test_membership_changes_show_up_after_the_cache(
    hub: tuple[HubProcess, str], authorizer: HubAuthorizer
) -> None:
    process, _ = hub
    assert process.api("POST", "/users/bob").status_code in (201, 409)
    token = user_token(process, "bob")
    before = await authorizer.identify(token)
    assert before is not None and not before.may_open(COURSE)
    process.api("POST", f"/groups/course-{COURSE}/users", json={"users": ["bob"]})
    await asyncio.sleep(0.6)
    after = await authorizer.identify(token)
    assert after is not None and after.may_open(COURSE)
    process.api("DELETE", f"/groups/course-{COURSE}/users", json={"users": ["bob"]})
    await asyncio.sleep(0.6)
    gone = await authorizer.identify(token)
    assert gone is not None and not gone.may_open(COURSE)
    # A deleted user's token stops working.
    process.api("DELETE", "/users/bob")
    await asyncio.sleep(0.6)
    assert await authorizer.identify(token) is None


async def test_exchange_with_the_real_hub(
    hub: tuple[HubProcess, str], authorizer: HubAuthorizer, tmp_path: Path
) -> None:
    process, _ = hub
    db_url = f"sqlite:///{tmp_path / 'learnhub.sqlite'}"
    upgrade(db_url)
    db = Database(db_url)
    storage = ExchangeStorage(tmp_path / "exchange", db, courses={COURSE})
    app = web.Application(
        exchange_routes(PREFIX, storage=storage, authorizer=authorizer), xsrf_cookies=True
    )
    server, url = await start_app(app)
    base = f"{url}{PREFIX}exchange/v1/courses/{COURSE}/"
    alice, eve, ines = (user_token(process, u) for u in ("alice", "eve", "ines"))
    try:
        async with httpx.AsyncClient(timeout=30) as http:

            def auth(token: str) -> dict[str, str]:
                return {"Authorization": f"token {token}"}

            nb = b'{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'
            response = await http.put(
                base + "assignments/ps1", headers=auth(ines), content=targz({"ps1.ipynb": nb})
            )
            assert response.status_code == 201, response.text
            assert (
                await http.get(base + "assignments/ps1", headers=auth(alice))
            ).status_code == 200
            refused = await http.get(base + "assignments/ps1", headers=auth(eve))
            assert refused.status_code == 403
            assert refused.json()["error"] == f"you do not have access to course {COURSE}"
            response = await http.post(
                base + "assignments/ps1/submissions",
                headers=auth(alice),
                content=targz({"ps1.ipynb": nb}),
            )
            assert response.status_code == 201 and response.json()["student_id"] == "alice"
            listed = await http.get(base + "submissions", headers=auth(process.admin_token))
            assert [s["student_id"] for s in listed.json()["submissions"]] == ["alice"]
            assert (await http.get(base + "submissions", headers=auth(alice))).status_code == 403
    finally:
        server.stop()
        db.dispose()


@pytest.mark.parametrize(
    "scopes",
    [
        # What JupyterHub gives a server in OAuth when another member opens it: identify only.
        ["read:users:name!user={user}", "read:users:groups!user={user}"],
        # A token a member made themselves for something else.
        ["read:users:name!user={user}"],
        ["users:activity!user={user}"],
    ],
    ids=["identify-oauth", "name-only", "activity-only"],
)
async def test_tokens_without_learnhubs_scope_are_refused(
    hub: tuple[HubProcess, str], authorizer: HubAuthorizer, tmp_path: Path, scopes: list[str]
) -> None:
    """A captured or home-made token of a member opens nothing at the exchange or grades API."""
    process, _ = hub
    stolen = {
        u: user_token(process, u, [s.format(user=u) for s in scopes]) for u in ("alice", "ines")
    }
    with pytest.raises(MissingScope):
        await authorizer.identify(stolen["alice"])
    db_url = f"sqlite:///{tmp_path / 'learnhub.sqlite'}"
    upgrade(db_url)
    db = Database(db_url)
    storage = ExchangeStorage(tmp_path / "exchange", db, courses={COURSE})
    settings = load_settings(None, {})
    catalog = Catalog([])
    app = web.Application(
        [
            *exchange_routes(PREFIX, storage=storage, authorizer=authorizer),
            *grades_routes(PREFIX, authorizer=authorizer, settings=settings, catalog=catalog),
        ],
        xsrf_cookies=True,
    )
    server, url = await start_app(app)
    base = f"{url}{PREFIX}exchange/v1/courses/{COURSE}/"
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            for user, path in (("alice", "assignments"), ("ines", "submissions")):
                refused = await http.get(
                    base + path, headers={"Authorization": f"token {stolen[user]}"}
                )
                assert refused.status_code == 403, refused.text
                assert LEARNHUB_SCOPE in refused.json()["error"]
            grades = await http.get(
                f"{url}{PREFIX}api/v1/courses/{COURSE}/grades",
                headers={"Authorization": f"token {stolen['ines']}"},
            )
            assert grades.status_code == 403, grades.text
            assert LEARNHUB_SCOPE in grades.json()["error"]
            # The same member's properly scoped token still works.
            listed = await http.get(
                base + "submissions",
                headers={"Authorization": f"token {user_token(process, 'ines')}"},
            )
            assert listed.status_code == 200, listed.text
    finally:
        server.stop()
        db.dispose()


def test_course_server_tokens_ask_for_learnhubs_scope() -> None:
    """What the Hub is configured to put in a course server's JUPYTERHUB_API_TOKEN."""
    assert LEARNHUB_SCOPE in SERVER_TOKEN_SCOPES
    assert "access:servers!server" in SERVER_TOKEN_SCOPES
