"""Hub lists longer than one page of the Hub API (issue 15), on real hubs.

JupyterHub serves at most 200 items a request (its default ``api_page_max_limit``) and ignores a
larger ``limit``. Asking for ``/groups?limit=10000`` saw the first 200 groups only, so a course
whose group came later kept a revoked member (``learnhub revoke`` said "nothing to do") and
``learnhub reconcile`` left a member without a purchase in it; container-hours read
``/users?state=active&limit=10000`` the same way and missed servers past the 200th user.

The first hub is LearnHub's own (local spawner, no server is started) with JupyterHub's default
page cap and 260 other groups made before the course's group. The second is a stock hub whose
servers are one shared HTTP server (tests/stub_server_hub_config.py), so servers really run as
far as the Hub can tell, without a process each; its page cap is 10, so 25 running servers take
three pages (205 servers at the default cap took two minutes to start).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from grader.exchange.auth import HubAuthorizer
from harness.hub import LoopbackHubProcess, venv_path
from hub import cli as learnhub_cli
from hub.access import scopes as hub_scopes
from hub.access.hub_api import LOOKUP_CHUNK
from hub.access.hub_groups import HubClient
from hub.service.reports import activity_share
from hub.settings import load_settings
from hub.store import Database, upgrade
from hub.usage import container_hours, sample
from tests.harness import ROOT, HubProcess, free_port, hub_settings, run_learnhub

COURSE = "python-foundations"
GROUP = f"course-{COURSE}"
#: Groups made before the course's own: more than one page of the Hub API.
OTHER_GROUPS = 260
#: The Hub's page cap this test relies on (JupyterHub's default ``api_page_max_limit``).
HUB_PAGE_CAP = 200
LEARNERS = [f"learner-{i:03d}" for i in range(OTHER_GROUPS)]


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    workdir = tmp_path_factory.mktemp("paging-hub")
    process = HubProcess(
        workdir=workdir,
        settings=hub_settings(workdir, courses_dir=ROOT / "courses", backend="local"),
    )
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def crowded(hub: HubProcess) -> HubProcess:
    """260 other groups, then the course's group made anew (as a course added later is): it is
    group number 260-odd, past the first page. Plus 262 users, also more than a page."""
    others = [f"club-{i:03d}" for i in range(OTHER_GROUPS)]
    made = hub.api("POST", "/groups", json={"groups": others})
    assert made.status_code == 201, made.text
    assert hub.api("DELETE", f"/groups/{GROUP}").status_code == 204
    assert hub.api("POST", f"/groups/{GROUP}").status_code == 201
    users = hub.api("POST", "/users", json={"usernames": [*LEARNERS, "late-learner", "stowaway"]})
    assert users.status_code == 201, users.text
    # The cap this test is about really applies: one big request does not reach the course.
    first = hub.api("GET", "/groups?limit=10000").json()
    assert len(first) == HUB_PAGE_CAP
    assert GROUP not in {g["name"] for g in first}
    return hub


def members(hub: HubProcess, group: str) -> set[str]:
    response = hub.api("GET", f"/groups/{group}")
    assert response.status_code == 200, response.text
    return set(response.json()["users"])


def test_revoke_removes_a_member_of_a_group_past_the_first_page(crowded: HubProcess) -> None:
    granted = run_learnhub(crowded, "grant", "late-learner", COURSE, timeout=120)
    assert granted.returncode == 0, granted.stderr
    assert "late-learner" in members(crowded, GROUP)

    revoked = run_learnhub(crowded, "revoke", "late-learner", COURSE, timeout=120)
    assert revoked.returncode == 0, revoked.stderr
    assert "nothing to do" not in revoked.stdout
    assert f"revoked: late-learner can no longer open {COURSE}" in revoked.stdout
    assert "late-learner" not in members(crowded, GROUP)


def test_reconcile_removes_a_member_without_purchase_past_the_first_page(
    crowded: HubProcess,
) -> None:
    # Put in the group behind LearnHub's back: no purchase, no grant.
    added = crowded.api("POST", f"/groups/{GROUP}/users", json={"users": ["stowaway"]})
    assert added.status_code == 200, added.text

    reconciled = run_learnhub(crowded, "reconcile", timeout=120)
    assert reconciled.returncode == 0, reconciled.stderr
    assert "stowaway" not in members(crowded, GROUP)


#: What `learnhub grant`, `revoke` and `reconcile` need of the Hub, read from every call they
#: make (docs/security.md, "Hub API paging and the operator token"): far less than `admin`.
MEMBERSHIP_SCOPES = list(hub_scopes.MEMBERSHIP_SCOPES)


def test_membership_commands_need_only_a_few_scopes(crowded: HubProcess) -> None:
    """The CLI's grant, revoke and reconcile work with a token of only MEMBERSHIP_SCOPES, which
    cannot do what the operator's `admin` token can (the first step to narrowing that token)."""
    owner = crowded.api("POST", "/users/ops-owner", json={"admin": True})
    assert owner.status_code == 201, owner.text
    made = crowded.api(
        "POST",
        "/users/ops-owner/tokens",
        json={"scopes": MEMBERSHIP_SCOPES, "note": "membership commands only"},
    )
    assert made.status_code == 201, made.text
    token = made.json()["token"]
    narrow = HubProcess(crowded.workdir, crowded.settings, admin_token=token, cli_token=token)
    assert set(crowded.api("GET", "/user").json()["scopes"]) > set(
        narrow.api("GET", "/user").json()["scopes"]
    )

    granted = run_learnhub(narrow, "grant", "late-learner", COURSE, timeout=120)
    assert granted.returncode == 0, granted.stderr
    assert "late-learner" in members(crowded, GROUP)
    revoked = run_learnhub(narrow, "revoke", "late-learner", COURSE, timeout=120)
    assert revoked.returncode == 0, revoked.stderr
    assert "late-learner" not in members(crowded, GROUP)
    crowded.api("POST", f"/groups/{GROUP}/users", json={"users": ["stowaway"]})
    reconciled = run_learnhub(narrow, "reconcile", timeout=120)
    assert reconciled.returncode == 0, reconciled.stderr
    assert "stowaway" not in members(crowded, GROUP)

    # What the admin token can do and this one cannot.
    assert narrow.api("POST", "/users/late-learner/tokens", json={}).status_code == 403
    assert narrow.api("PATCH", "/users/late-learner", json={"admin": True}).status_code == 403
    assert narrow.api("POST", "/users/someone-new").status_code == 403
    assert narrow.api("POST", "/shutdown").status_code == 403
    assert crowded.api("GET", "/users/late-learner").json()["admin"] is False


def the_clis_token(hub: HubProcess) -> str:
    """The token `learnhub` sends to the Hub, resolved by the CLI's own code from the
    environment and settings it runs with (:func:`run_learnhub`)."""
    return learnhub_cli._cli_token(load_settings(hub.config_path, hub.env()))


async def test_the_clis_token_holds_only_what_the_cli_needs(crowded: HubProcess) -> None:
    """The CLI's token is narrowed to its own role: the Hub scopes of grant, revoke and
    reconcile plus LearnHub's (the exchange, activation); it cannot do what `admin` can. It
    failed while the CLI ran with the operator's full-admin token: that token made another
    user's token, an admin, a user, read servers' state and could shut the Hub down."""
    token = the_clis_token(crowded)
    cli = HubProcess(crowded.workdir, crowded.settings, admin_token=token)
    me = cli.api("GET", "/user")
    assert me.status_code == 200, me.text
    assert me.json()["kind"] == "service" and me.json()["name"] == "learnhub-cli"
    granted = set(me.json()["scopes"])
    assert "admin:users" not in granted and "tokens" not in granted, granted
    # Every scope JupyterHub expands the role to is one the CLI's commands use, or comes with
    # one of them (`read:users` brings `read:users:name`, `admin:groups` `delete:groups`).
    assert {s.split("!")[0] for s in granted} <= {
        *hub_scopes.CLI_SCOPES, "read:users:name", "read:users:groups", "read:groups:name",
        "read:users:activity", "read:roles:users", "read:roles:groups", "read:roles",
        "delete:groups",
    }, granted  # fmt: skip

    # What the full-admin token can do and the CLI's cannot.
    assert cli.api("POST", "/users/late-learner/tokens", json={}).status_code == 403
    assert cli.api("PATCH", "/users/late-learner", json={"admin": True}).status_code == 403
    assert cli.api("POST", "/users/someone-else").status_code == 403
    assert cli.api("POST", "/users/late-learner/server").status_code == 403
    assert cli.api("GET", "/services").status_code == 403
    assert cli.api("POST", "/shutdown").status_code == 403
    assert crowded.api("GET", "/users/late-learner").json()["admin"] is False
    assert crowded.api("GET", "/users/someone-else").status_code == 404

    # What LearnHub needs it for still works: the membership commands (the module's other
    # tests run them with this token too) ...
    granted_run = run_learnhub(crowded, "grant", "late-learner", COURSE, timeout=120)
    assert granted_run.returncode == 0, granted_run.stderr
    assert "late-learner" in members(crowded, GROUP)
    revoked = run_learnhub(crowded, "revoke", "late-learner", COURSE, timeout=120)
    assert revoked.returncode == 0, revoked.stderr
    assert "late-learner" not in members(crowded, GROUP)
    # ... the exchange takes it as the operator (`learnhub grader`), by LearnHub's own scope ...
    async with HubClient(crowded.api_url, crowded.admin_token) as client:
        authorizer = HubAuthorizer(client, cache_seconds=0)
        try:
            operator = await authorizer.identify(token)
        finally:
            await authorizer.aclose()
    assert operator is not None and operator.admin and operator.kind == "service"
    # ... and so does account activation (404: nobody of that name signed up; past the scope
    # check), which a token with `admin:users` alone may no longer use.
    activate = crowded.url + "hub/api/learnhub/accounts/nobody-yet/activate"
    answer = httpx.post(activate, headers={"Authorization": f"token {token}"}, timeout=30)
    assert answer.status_code == 404, answer.text
    crowded.api("POST", "/users/ops-owner", json={"admin": True})
    user_admin = crowded.api(
        "POST", "/users/ops-owner/tokens", json={"scopes": ["admin:users"], "note": "no operator"}
    )
    assert user_admin.status_code == 201, user_admin.text
    refused = httpx.post(
        activate, headers={"Authorization": f"token {user_admin.json()['token']}"}, timeout=30
    )
    assert refused.status_code == 403 and hub_scopes.OPERATOR_SCOPE in refused.text


async def test_the_client_lists_every_user_and_group(crowded: HubProcess) -> None:
    async with HubClient(crowded.api_url, crowded.admin_token) as client:
        users = {u["name"] for u in await client.list_users()}
        groups = await client.groups()
    assert set(LEARNERS) <= users
    assert len(groups) > OTHER_GROUPS
    assert GROUP in groups


# -- LearnHub's group endpoint -----------------------------------------------------------------

#: More learners than one of the endpoint's look-up queries takes (hub.access.hub_api).
BULK = [f"bulk-{i:03d}" for i in range(LOOKUP_CHUNK + 20)]


def test_the_group_endpoint_changes_hundreds_of_members_in_one_request(crowded: HubProcess) -> None:
    """``/hub/api/learnhub/groups/<g>/users``, what the service adds buyers with: JupyterHub's
    own endpoint ran four queries per learner (91 % of the Hub's CPU in a burst of purchases,
    docs/benchmarks.md). The same change, seen from the group and from each user."""
    made = crowded.api("POST", "/users", json={"usernames": BULK})
    assert made.status_code == 201, made.text
    path = f"/learnhub/groups/{GROUP}/users"
    # Names are normalized as at sign-in: an upper-case spelling is the same learner.
    added = crowded.api("POST", path, json={"users": [*BULK, BULK[0].upper()]})
    assert added.status_code == 200, added.text
    assert added.json() == {"name": GROUP, "added": BULK, "already": []}
    assert set(BULK) <= members(crowded, GROUP)
    assert GROUP in crowded.api("GET", f"/users/{BULK[-1]}").json()["groups"]

    again = crowded.api("POST", path, json={"users": [BULK[0], "learner-001"]})
    assert again.json() == {"name": GROUP, "added": ["learner-001"], "already": [BULK[0]]}

    # One unknown name: 400 naming it, and nobody of the request is added.
    refused = crowded.api("POST", path, json={"users": ["learner-002", "no-such-person"]})
    assert refused.status_code == 400 and "No such user: no-such-person" in refused.text
    assert "learner-002" not in members(crowded, GROUP)
    for body in ({"users": "learner-002"}, {"names": []}, [1, 2]):
        bad = crowded.api("POST", path, json=body)
        assert bad.status_code == 400 and "users" in bad.text, (body, bad.text)
    missing = crowded.api("POST", "/learnhub/groups/course-nowhere/users", json={"users": []})
    assert missing.status_code == 404 and "No such group" in missing.text

    removed = crowded.api("DELETE", path, json={"users": [*BULK, "learner-003"]})
    assert removed.status_code == 200, removed.text
    assert removed.json() == {"name": GROUP, "removed": BULK, "absent": ["learner-003"]}
    assert not set(BULK) & members(crowded, GROUP)
    assert GROUP not in crowded.api("GET", f"/users/{BULK[-1]}").json()["groups"]
    crowded.api("DELETE", path, json={"users": ["learner-001"]})


def test_the_group_endpoint_needs_the_groups_scope_on_that_group(crowded: HubProcess) -> None:
    """The same scope as JupyterHub's endpoint, narrowed the same way by a group filter."""
    crowded.api("POST", "/users/ops-owner", json={"admin": True})

    def token(scopes: list[str]) -> HubProcess:
        made = crowded.api("POST", "/users/ops-owner/tokens", json={"scopes": scopes})
        assert made.status_code == 201, made.text
        key = made.json()["token"]
        return HubProcess(crowded.workdir, crowded.settings, admin_token=key, cli_token=key)

    body = {"users": ["learner-004"]}
    other_group = token(["groups!group=club-000"])
    denied = other_group.api("POST", f"/learnhub/groups/{GROUP}/users", json=body)
    # JupyterHub answers a filtered scope's other resources as missing; so does its endpoint.
    assert denied.status_code == 404 and "No access" in denied.text, denied.text
    upstream = other_group.api("POST", f"/groups/{GROUP}/users", json=body)
    assert (upstream.status_code, upstream.json()) == (denied.status_code, denied.json())
    allowed = other_group.api("POST", "/learnhub/groups/club-000/users", json=body)
    assert allowed.status_code == 200, allowed.text
    assert (
        token(["read:groups"])
        .api("DELETE", "/learnhub/groups/club-000/users", json=body)
        .status_code
        == 403
    )
    anonymous = httpx.post(
        crowded.url + f"hub/api/learnhub/groups/{GROUP}/users", json=body, timeout=30
    )
    assert anonymous.status_code == 403
    assert "learner-004" not in members(crowded, GROUP)
    assert "learner-004" in members(crowded, "club-000")


async def test_recent_activity_reads_only_the_recently_active_pages(crowded: HubProcess) -> None:
    """The operator dashboard's activity figure read every user (50 requests of ~0.4 s at
    10,000 members, benchmarks/scale.py); it now reads users by most recent activity and stops
    at the first one older than the window: one page here, not two."""
    now = datetime.now(UTC)
    recent = {"learner-007": now - timedelta(hours=1), "learner-123": now - timedelta(days=2)}
    stale = {"learner-200": now - timedelta(days=30)}
    for name, when in {**recent, **stale}.items():
        stamp = when.isoformat().replace("+00:00", "Z")
        r = crowded.api("POST", f"/users/{name}/activity", json={"last_activity": stamp})
        assert r.status_code in (200, 204), (r.status_code, r.text)
    requests: list[str] = []

    async def count(request: httpx.Request) -> None:
        requests.append(str(request.url))

    transport = httpx.AsyncHTTPTransport()
    async with HubClient(crowded.api_url, crowded.admin_token, transport=transport) as client:
        client._client.event_hooks["request"] = [count]
        users = await client.users_active_since(now - timedelta(days=7))
    assert len(requests) == 1, requests
    # The page that holds the first older user comes whole: the share counts only the window.
    assert set(recent) <= {u["name"] for u in users}
    assert activity_share(users, set(LEARNERS), now=now) == len(recent) / len(LEARNERS)


# -- container-hours past 200 running servers ----------------------------------------------------

SERVER = "py"
#: The stub hub's page cap, and how many servers run there: three pages.
STUB_PAGE_MAX = 10
RUNNING = 2 * STUB_PAGE_MAX + 5


class _Answer(BaseHTTPRequestHandler):
    """Answers every request with 200: enough for the Hub to call a server up."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass
class StubServerHub(LoopbackHubProcess):
    """A stock hub whose servers are all the one HTTP server at ``server_port``."""

    workdir: Path
    server_port: int
    admin_token: str = field(default_factory=lambda: secrets.token_hex(32))
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    label = "stub-server hub"

    @property
    def config_file(self) -> Path:
        return Path(__file__).with_name("stub_server_hub_config.py")

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("STUB_", "LEARNHUB_"))}
        env.update(
            STUB_DATA_DIR=str(self.data_dir),
            STUB_PORT=str(self.port),
            STUB_HUB_PORT=str(free_port()),
            STUB_PROXY_API_PORT=str(free_port()),
            STUB_SERVER_PORT=str(self.server_port),
            STUB_ADMIN_TOKEN=self.admin_token,
            STUB_PAGE_MAX=str(STUB_PAGE_MAX),
        )
        env["PATH"] = venv_path(env, str(ROOT / "tools" / "node_modules" / ".bin"))
        return env


@pytest.fixture(scope="module")
def busy_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StubServerHub]:
    """A hub with 25 users whose server ``py`` is running and ready (three pages)."""
    answer = ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
    threading.Thread(target=answer.serve_forever, daemon=True).start()
    process = StubServerHub(
        workdir=tmp_path_factory.mktemp("busy-hub"), server_port=answer.server_address[1]
    )
    try:
        process.start()
        names = [f"busy-{i:03d}" for i in range(RUNNING)]
        assert process.api("POST", "/users", json={"usernames": names}).status_code == 201

        def start(name: str) -> int:
            return process.api("POST", f"/users/{name}/servers/{SERVER}").status_code

        with ThreadPoolExecutor(max_workers=4) as pool:
            statuses = list(pool.map(start, names))
        # 201: started and ready (the stub answers at once, well within slow_spawn_timeout).
        assert statuses == [201] * RUNNING, process.log_tail()
        # The cap really applies: one big request sees the first page only.
        first = process.api("GET", "/users?state=active&limit=10000").json()
        assert len(first) == STUB_PAGE_MAX
        yield process
    finally:
        process.stop()
        answer.shutdown()


async def test_usage_sample_counts_servers_past_the_first_page(
    busy_hub: StubServerHub, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'learnhub.sqlite'}"
    upgrade(url)
    db = Database(url)
    try:
        async with HubClient(busy_hub.api_url, busy_hub.admin_token) as client:
            seen = await sample(client, db, {SERVER})
        assert seen == RUNNING
        assert set(container_hours(db)) == {SERVER}
    finally:
        db.dispose()
