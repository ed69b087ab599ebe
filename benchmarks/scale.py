"""One hub with many members, courses and running servers (a measurement, not a test).

    .venv/bin/python benchmarks/scale.py [--members 10000] [--courses 200] [--servers 1000]
        [--purchases 500] [--samples 200] [--page-samples 30] [--keep]
    .venv/bin/python benchmarks/scale.py --reuse /tmp/lh-scale-XXXX   # measure again, no load

Starts a real LearnHub hub (JupyterHub + configurable-http-proxy + the LearnHub service, SQLite,
`payments.provider: demo`) on loopback, with LearnHub's own config and one change: the no-op
spawner of ``benchmarks/noop_spawner.py`` (every server is one shared tiny HTTP server run here),
so what is measured is the Hub, the proxy and the service, not Docker. Then it loads:

- ``--courses`` generated courses (minimal ``course.yaml``) in a temporary courses folder; the
  Hub's groups come from LearnHub's config as usual;
- ``--members`` members (bulk ``POST /hub/api/users``); every member is granted one course, every
  second member a second one (manual grants through LearnHub's repository, as the service
  account, in one transaction), and one full membership sync (``learnhub reconcile``) puts them
  in the Hub's groups;
- ``--servers`` running named servers (server name = course id), 16 spawn requests in flight.

and measures, printing a Markdown table (and writing ``benchmarks/results/scale-<members>.json``):

- Hub API p50/p95: ``GET /users/<name>``, ``GET /groups/course-<id>``, one page of ``GET /users``
  (200 a page, random offset), with a token the Hub made (read scopes only);
- a burst of ``--purchases`` purchases: checkout sessions created through the demo provider's
  Stripe API, completed by its simulator, every event genuinely signed and posted (8 clients)
  through the proxy to the real webhook; the time until every buyer is in its course's group;
- the catalog, a member's home page, the operator dashboard and an instructor dashboard p50/p95,
  through the proxy, logged in;
- the size of both SQLite databases, and the memory of the hub, the proxy and the service.

Loopback only; every loop is bounded. The temporary folder is removed at the end, unless
``--keep``: then ``--reuse <folder>`` starts the same hub on the loaded data (the running servers
survive, as the no-op spawner's state says they run) and measures again without the 20-minute
load, which is how a change is measured before and after on the same data. Each reused round's
burst buys another course, so its buyers are new ones.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import stripe
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import (  # noqa: E402
    child_pids,
    cmdline,
    cpu_seconds,
    loadavg,
    machine,
    percentile,
    rss_mib,
    serve_at_root,
)
from harness.browser import Browser  # noqa: E402
from harness.hub import HubProcess, hub_settings, run_learnhub  # noqa: E402
from harness.stripe_standin import open_course_checkout  # noqa: E402
from hub.billing.demo import DatabaseStore, sign  # noqa: E402
from hub.billing.simulator import StripeSimulator  # noqa: E402
from hub.privilege import run_as_service_user, service_account  # noqa: E402
from hub.settings import Settings, settings_from_environment  # noqa: E402
from hub.store import Database  # noqa: E402
from hub.store import repository as repo  # noqa: E402

#: How many webhook clients post the burst at once (as in benchmarks/webhook.py).
WEBHOOK_CLIENTS = 8
#: Members created per `POST /hub/api/users`: the Hub creates them one by one on its event loop
#: (a commit each), so a call of 1000 kept it unresponsive for over a minute here.
CREATE_BATCH = 100
#: Spawn requests in flight while starting the servers.
SPAWN_CLIENTS = 16
#: How often the burst's membership poller lists the Hub's groups.
POLL_SECONDS = 0.25
#: Bounds of every wait.
SYNC_TIMEOUT = 900.0
PRICE = 4900


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def course_id(index: int) -> str:
    return f"course{index:04d}"


def courses_of(member: int, courses: int) -> list[str]:
    """The courses member ``member`` is granted: one each, a second for every second member."""
    first = member % courses
    owned = [course_id(first)]
    if member % 2 == 0 and courses > 1:
        owned.append(course_id((first + 1 + member // courses) % courses))
    return list(dict.fromkeys(owned))


def member_name(index: int) -> str:
    return f"member{index:05d}"


def make_courses(folder: Path, count: int) -> None:
    """``count`` minimal courses; demo-instructor teaches the first one."""
    for index in range(count):
        cid = course_id(index)
        (folder / cid).mkdir(parents=True)
        (folder / cid / "materials").mkdir()
        (folder / cid / "course.yaml").write_text(
            yaml.safe_dump(
                {
                    "id": cid,
                    "title": f"Course {index}",
                    "summary": f"Generated course {index} of the scale benchmark.",
                    "price": {"amount": PRICE, "currency": "usd"},
                    "instructors": ["demo-instructor"] if index == 0 else [],
                }
            )
        )


class SharedServer:
    """The one HTTP server every no-op 'server' is: answers 200 to anything, on loopback."""

    def __init__(self, port: int = 0) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = b'{"ok": true}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                return

        # A reused hub's servers keep their recorded URL: the port is the first run's.
        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> SharedServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class ScaleHub(HubProcess):
    """LearnHub's hub, run through ``benchmarks/scale_config.py`` (the no-op spawner)."""

    @property
    def config_file(self) -> Path:
        return ROOT / "benchmarks" / "scale_config.py"


def timed_series(
    call: Callable[[int], httpx.Response], samples: int, budget: float = 3600.0
) -> list[float]:
    """Seconds of each of ``samples`` sequential calls (fewer, but at least 5, when they take
    longer than ``budget`` seconds in all); every answer must be 200."""
    times: list[float] = []
    for i in range(samples):
        if len(times) >= 5 and sum(times) > budget:
            break
        start = time.perf_counter()
        response = call(i)
        times.append(time.perf_counter() - start)
        if response.status_code != 200:
            raise RuntimeError(f"{response.request.url} -> {response.status_code}")
    return times


def summary(times: list[float]) -> dict[str, float]:
    return {
        "n": len(times),
        "p50_ms": statistics.median(times) * 1000,
        "p95_ms": percentile(times, 0.95) * 1000,
        "max_ms": max(times) * 1000,
    }


def reader_token(hub: HubProcess) -> str:
    """A Hub-made token with read scopes only (config tokens are hashed slowly on every use)."""
    name = "bench-reader"
    created = hub.api("POST", f"/users/{name}", json={"admin": True})
    if created.status_code == 409:
        # Made by an earlier round on the same data; the Hub's restart took its admin flag
        # (it is not in the configured admin users), without which it may not grant the scopes.
        hub.api("PATCH", f"/users/{name}", json={"admin": True}).raise_for_status()
    else:
        created.raise_for_status()
    response = hub.api(
        "POST",
        f"/users/{name}/tokens",
        json={
            "scopes": ["list:users", "read:users", "list:groups", "read:groups"],
            "note": "scale benchmark",
        },
    )
    response.raise_for_status()
    return str(response.json()["token"])


def service_settings(hub: HubProcess) -> Settings:
    return settings_from_environment(hub.env(), hub.config_path)


def grant_all(hub: HubProcess, members: int, courses: int) -> int:
    """Manual grants for every member, written as the service account in one transaction."""
    settings = service_settings(hub)
    count = sum(len(courses_of(m, courses)) for m in range(members))

    def work() -> None:
        db = Database(settings.learnhub_db_url)
        try:
            with db.transaction() as session:
                for m in range(members):
                    for cid in courses_of(m, courses):
                        repo.set_manual_access(
                            session, member_name(m), cid, active=True, reason="scale benchmark"
                        )
        finally:
            db.dispose()

    run_as_service_user(service_account(settings), work)
    return count


def prepare_purchases(
    hub: HubProcess, buyers: list[tuple[str, str]], api_key: str, out: Path
) -> None:
    """What Stripe holds and sends when ``buyers`` pay: checkout sessions created through the demo
    provider's Stripe API (as the checkout page does) and recorded as LearnHub's, completed by the
    demo's simulator; the events are written to ``out`` for the burst to sign and post."""
    settings = service_settings(hub)
    prefix = "/services/learnhub/"
    api = f"http://127.0.0.1:{settings.hub.service_port}{prefix}demo-stripe"

    def work() -> None:
        client = stripe.StripeClient(api_key, base_addresses={"api": api}, max_network_retries=0)
        db = Database(settings.learnhub_db_url)
        events: list[tuple[str, dict[str, Any]]] = []
        try:
            for user, cid in buyers:
                session_id = open_course_checkout(client, user, cid, PRICE, cid, db)
                simulator = StripeSimulator(DatabaseStore(db))
                events += [(user, e) for e in simulator.complete_checkout(session_id)]
        finally:
            db.dispose()
        out.write_text(json.dumps(events))

    account = service_account(settings)
    # The child writes as the service account: the file is made here and given to it.
    out.touch(mode=0o600)
    if account is not None:
        os.chown(out, account.uid, account.gid)
    run_as_service_user(account, work)


async def group_members(client: httpx.AsyncClient, api: str, headers: dict[str, str]) -> dict:
    """Every group and its members, page by page (as LearnHub's sync reads them)."""
    groups: dict[str, set[str]] = {}
    offset = 0
    for _ in range(1000):
        r = await client.get(
            f"{api}/groups",
            params={"offset": offset, "limit": 200},
            headers={**headers, "Accept": "application/jupyterhub-pagination+json"},
        )
        r.raise_for_status()
        page = r.json()
        groups.update({g["name"]: set(g["users"]) for g in page["items"]})
        following = page["_pagination"].get("next")
        if not following:
            return groups
        offset = int(following["offset"])
    raise RuntimeError("more than 1000 pages of groups")


async def burst(
    hub: HubProcess, token: str, events: list[tuple[str, dict[str, Any]]], secret: str
) -> dict[str, Any]:
    """Post the signed events through the proxy; time until every buyer is in its group."""
    webhook = hub.url + "services/learnhub/stripe/webhook"
    wanted: dict[str, set[str]] = {}
    for user, event in events:
        meta = event["data"]["object"].get("metadata") or {}
        if meta.get("learnhub_course"):
            wanted.setdefault(f"course-{meta['learnhub_course']}", set()).add(user)
    pairs = {(g, u) for g, users in wanted.items() for u in users}
    # Signed just before sending, as Stripe does; the signature's time is within its tolerance.
    requests = [(json.dumps(e), user) for user, e in events]
    headers = {"Authorization": f"token {token}"}
    statuses: list[int] = []
    async with httpx.AsyncClient(timeout=120) as client:
        start = time.perf_counter()

        async def post_all(items: list[tuple[str, str]]) -> None:
            for payload, _user in items:
                r = await client.post(
                    webhook,
                    content=payload.encode(),
                    headers={
                        "Content-Type": "application/json",
                        "Stripe-Signature": sign(payload, secret),
                    },
                )
                statuses.append(r.status_code)

        posting = asyncio.gather(
            *(post_all(requests[i::WEBHOOK_CLIENTS]) for i in range(WEBHOOK_CLIENTS))
        )
        posted_at: float | None = None
        members_at: float | None = None
        polls = 0
        deadline = start + SYNC_TIMEOUT
        missing = set(pairs)
        while time.perf_counter() < deadline:
            if posted_at is None and posting.done():
                posting.result()
                posted_at = time.perf_counter() - start
            groups = await group_members(client, hub.api_url, headers)
            polls += 1
            missing = {(g, u) for g, u in pairs if u not in groups.get(g, set())}
            if not missing:
                members_at = time.perf_counter() - start
                break
            await asyncio.sleep(POLL_SECONDS)
        await posting
        if posted_at is None:
            posted_at = time.perf_counter() - start
    # Not all in their groups by the deadline: recorded (with how many were missing), and the
    # run goes on to the pages, so an unattended run still prints its table.
    bad = [s for s in statuses if s != 200]
    if bad:
        raise RuntimeError(f"burst: {len(bad)} webhook answers were not 200: {bad[:5]}")
    return {
        "purchases": len(pairs),
        "events": len(events),
        "posted_s": posted_at,
        "all_members_s": members_at,
        "missing_at_deadline": 0 if members_at is not None else len(missing),
        "polls": polls,
    }


async def spawn_servers(hub: HubProcess, servers: list[tuple[str, str]]) -> float:
    """Start every (user, course) server, ``SPAWN_CLIENTS`` at a time; seconds until all ready."""
    headers = {"Authorization": f"token {hub.admin_token}"}
    queue = list(servers)
    start = time.perf_counter()
    async with httpx.AsyncClient(timeout=120, headers=headers) as client:

        async def worker() -> None:
            while queue:
                user, cid = queue.pop()
                r = await client.post(f"{hub.api_url}/users/{user}/servers/{cid}")
                if r.status_code not in (201, 202):
                    raise RuntimeError(f"spawn {user}/{cid}: {r.status_code} {r.text}")

        await asyncio.gather(*(worker() for _ in range(SPAWN_CLIENTS)))
        deadline = time.perf_counter() + SYNC_TIMEOUT
        while time.perf_counter() < deadline:
            if await count_ready(client, hub) >= len(servers):
                return time.perf_counter() - start
            await asyncio.sleep(0.5)
    raise RuntimeError(f"servers not all ready after {SYNC_TIMEOUT}s")


async def count_ready(client: httpx.AsyncClient, hub: HubProcess) -> int:
    """Servers listed as ready (active, no pending spawn), every page."""
    ready = 0
    offset = 0
    for _ in range(1000):
        r = await client.get(
            f"{hub.api_url}/users",
            params={"state": "ready", "offset": offset, "limit": 200},
            headers={"Accept": "application/jupyterhub-pagination+json"},
        )
        r.raise_for_status()
        page = r.json()
        ready += sum(len(u["servers"]) for u in page["items"])
        following = page["_pagination"].get("next")
        if not following:
            return ready
        offset = int(following["offset"])
    raise RuntimeError("more than 1000 pages of users")


async def ready_servers(hub: HubProcess) -> int:
    """How many servers are ready now."""
    headers = {"Authorization": f"token {hub.admin_token}"}
    async with httpx.AsyncClient(timeout=120, headers=headers) as client:
        return await count_ready(client, hub)


def db_sizes(hub: HubProcess) -> dict[str, float]:
    """MiB of both SQLite databases, with their write-ahead logs."""

    def mib(path: Path) -> float:
        files = [path, Path(f"{path}-wal"), Path(f"{path}-journal")]
        return sum(f.stat().st_size for f in files if f.exists()) / 1024 / 1024

    return {
        "jupyterhub.sqlite": mib(hub.data_dir / "jupyterhub.sqlite"),
        "learnhub.sqlite": mib(hub.learnhub_db_path),
    }


def processes(hub: HubProcess) -> dict[str, int | None]:
    assert hub.proc is not None
    children = child_pids(hub.proc.pid)
    service = next((p for p in children if "hub.service" in cmdline(p)), None)
    return {"hub": hub.proc.pid, "proxy": hub.proxy_pid(), "service": service}


def logged_in(hub: HubProcess, user: str, password: str) -> Browser:
    browser = Browser(hub)
    response = browser.login(user, password)
    if response.status_code != 200 or "/hub/login" in str(response.url):
        raise RuntimeError(f"login of {user} failed: {response.status_code} {response.url}")
    return browser


STATE_FILE = "scale-state.json"


def new_hub(args: argparse.Namespace) -> tuple[Path, ScaleHub, SharedServer, dict[str, Any]]:
    """A fresh folder, courses, shared server and hub (not started); its state is saved."""
    work = Path(tempfile.mkdtemp(prefix="lh-scale-"))
    courses_dir = work / "courses"
    make_courses(courses_dir, args.courses)
    shared = SharedServer().start()
    settings = hub_settings(work, courses_dir=courses_dir, backend="local")
    serve_at_root(settings)
    settings["hub"]["log_level"] = "WARNING"
    settings["payments"] = {"provider": "demo"}
    # Servers never expire here: the benchmark keeps them running while it measures.
    settings["spawner"]["idle_timeout"] = 0
    state = {
        "settings": settings,
        "secret": "whsec_" + secrets.token_hex(16),
        "api_key": "sk_test_scale_" + secrets.token_hex(16),
        "shared_port": shared.server.server_address[1],
        "scale": {"members": args.members, "courses": args.courses, "servers": args.servers},
        "round": 0,
    }
    (work / STATE_FILE).write_text(json.dumps(state))
    log(f"folder {work} (kept with --keep, for --reuse)")
    return work, scale_hub(work, state, shared), shared, state


def reused_hub(work: Path) -> tuple[ScaleHub, SharedServer, dict[str, Any]]:
    """The hub of a kept folder, on its loaded data; the next round of purchases."""
    state = json.loads((work / STATE_FILE).read_text())
    state["round"] += 1
    (work / STATE_FILE).write_text(json.dumps(state))
    shared = SharedServer(state["shared_port"]).start()
    hub = scale_hub(work, state, shared)
    # As an operator does after updating LearnHub: its database follows the code's migrations.
    hub.prepare()
    upgraded = run_learnhub(hub, "upgrade", timeout=SYNC_TIMEOUT)
    if upgraded.returncode != 0:
        raise RuntimeError(f"learnhub upgrade failed:\n{upgraded.stderr}")
    return hub, shared, state


def scale_hub(work: Path, state: dict[str, Any], shared: SharedServer) -> ScaleHub:
    return ScaleHub(
        workdir=work,
        settings=state["settings"],
        extra_env={
            "SCALE_BENCH_SERVER_URL": shared.url,
            "PYTHONPATH": str(ROOT),
            "LEARNHUB_STRIPE_WEBHOOK_SECRETS": state["secret"],
            "LEARNHUB_STRIPE_SECRET_KEY": state["api_key"],
        },
    )


def load(
    hub: ScaleHub, args: argparse.Namespace, result: dict[str, Any], state: dict[str, Any]
) -> None:
    """Members, grants, one full sync and the running servers; a reused folder whose load was
    interrupted after the grants does the rest."""
    if state.get("loaded") == "grants":
        sync_and_spawn(hub, args, result)
        return
    names = [member_name(m) for m in range(args.members)]
    t0 = time.perf_counter()
    admin = httpx.Client(
        headers={"Authorization": f"token {hub.admin_token}"}, timeout=SYNC_TIMEOUT
    )
    for i in range(0, len(names), CREATE_BATCH):
        r = admin.post(f"{hub.api_url}/users", json={"usernames": names[i : i + CREATE_BATCH]})
        if r.status_code != 201:
            raise RuntimeError(f"creating users: {r.status_code} {r.text[:300]}")
    admin.close()
    result["create_members_s"] = time.perf_counter() - t0
    log(f"{args.members} members in {result['create_members_s']:.1f} s")

    t0 = time.perf_counter()
    result["entitlements"] = grant_all(hub, args.members, args.courses)
    result["grant_s"] = time.perf_counter() - t0
    log(f"{result['entitlements']} grants in {result['grant_s']:.1f} s")
    state["loaded"] = "grants"
    (hub.workdir / STATE_FILE).write_text(json.dumps(state))
    sync_and_spawn(hub, args, result)


def sync_and_spawn(hub: ScaleHub, args: argparse.Namespace, result: dict[str, Any]) -> None:
    """One full membership sync, then the running servers."""
    t0 = time.perf_counter()
    synced = run_learnhub(hub, "reconcile", timeout=SYNC_TIMEOUT)
    if synced.returncode != 0:
        raise RuntimeError(f"learnhub reconcile failed:\n{synced.stderr}")
    result["full_sync_s"] = time.perf_counter() - t0
    log(f"full membership sync in {result['full_sync_s']:.1f} s")

    servers = [
        (member_name(m), courses_of(m, args.courses)[0])
        for m in range(min(args.servers, args.members))
    ]
    result["spawn_all_s"] = asyncio.run(spawn_servers(hub, servers))
    log(f"{len(servers)} servers ready in {result['spawn_all_s']:.1f} s")


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.reuse:
        work = args.reuse
        hub, shared, state = reused_hub(work)
    else:
        work, hub, shared, state = new_hub(args)
    scale = state["scale"]
    args.members, args.courses, args.servers = scale["members"], scale["courses"], scale["servers"]
    secret, api_key = state["secret"], state["api_key"]
    result: dict[str, Any] = {
        "scale": scale,
        "round": state["round"],
        "machine": machine(),
        "loadavg": {},
    }
    t0 = time.perf_counter()
    hub.start(timeout=600)
    result["hub_start_s"] = time.perf_counter() - t0
    log(f"hub up in {result['hub_start_s']:.1f} s ({args.courses} courses)")
    pids = processes(hub)
    cpu_start = {k: cpu_seconds(v) for k, v in pids.items()}
    try:
        if state.get("loaded") != "all":
            load(hub, args, result, state)
            state["loaded"] = "all"
            (work / STATE_FILE).write_text(json.dumps(state))
        result["ready_servers"] = asyncio.run(ready_servers(hub))
        log(f"{result['ready_servers']} servers ready")

        result["loadavg"]["hub API"] = loadavg()
        token = reader_token(hub)
        rng = random.Random(16)
        api = httpx.Client(
            base_url=hub.api_url + "/", headers={"Authorization": f"token {token}"}, timeout=120
        )
        pages = max(1, args.members // 200)
        result["hub_api"] = {
            "GET /users/{name}": summary(
                timed_series(
                    lambda i: api.get(f"users/{member_name(rng.randrange(args.members))}"),
                    args.samples,
                )
            ),
            "GET /groups/{course}": summary(
                timed_series(
                    lambda i: api.get(f"groups/course-{course_id(rng.randrange(args.courses))}"),
                    args.samples,
                )
            ),
            "GET /users (a page of 200)": summary(
                timed_series(
                    lambda i: api.get(
                        "users",
                        params={"offset": rng.randrange(pages) * 200, "limit": 200},
                        headers={"Accept": "application/jupyterhub-pagination+json"},
                    ),
                    args.samples,
                )
            ),
        }
        api.close()
        log(f"hub API: {json.dumps(result['hub_api'])}")

        result["loadavg"]["burst"] = loadavg()
        result["burst"] = None
        if args.purchases:
            # The burst: members buy a course they do not have yet, spread over the courses.
            buyers = []
            for m in range(args.members):
                offset = args.courses // 2 + state["round"]
                cid = course_id((m % args.courses + offset) % args.courses)
                if cid not in courses_of(m, args.courses):
                    buyers.append((member_name(m), cid))
                if len(buyers) == args.purchases:
                    break
            events_file = work / "events.json"
            t0 = time.perf_counter()
            prepare_purchases(hub, buyers, api_key, events_file)
            log(f"{len(buyers)} checkout sessions made in {time.perf_counter() - t0:.1f} s")
            events = [tuple(e) for e in json.loads(events_file.read_text())]
            result["burst"] = asyncio.run(burst(hub, token, events, secret))  # type: ignore[arg-type]
            log(f"burst: {json.dumps(result['burst'])}")

        result["loadavg"]["pages"] = loadavg()
        pages_result = {}
        learner = logged_in(hub, "demo-learner", "learnhub-demo")
        admin = logged_in(hub, "demo-admin", "learnhub-demo")
        instructor = logged_in(hub, "demo-instructor", "learnhub-demo")
        plan: list[tuple[str, Browser, str]] = [
            ("catalog (member)", learner, "services/learnhub/"),
            ("home page (member)", learner, "hub/home"),
            ("instructor dashboard", instructor, f"services/learnhub/instructor/{course_id(0)}"),
            ("operator dashboard", admin, "services/learnhub/admin"),
        ]
        for label, browser, path in plan:
            browser.client.get(path).raise_for_status()  # warm: OAuth hand-shake, caches
            pages_result[label] = summary(
                timed_series(
                    lambda i, b=browser, p=path: b.client.get(p),
                    args.page_samples,
                    args.page_budget,
                )
            )
            log(f"{label}: {json.dumps(pages_result[label])}")
        for browser in (learner, admin, instructor):
            browser.close()
        result["pages"] = pages_result
        result["loadavg"]["end"] = loadavg()
        result["db_mib"] = db_sizes(hub)
        result["rss_mib"] = {k: rss_mib(v) for k, v in pids.items()}
        result["cpu_s"] = {k: cpu_seconds(v) - cpu_start[k] for k, v in pids.items()}
    finally:
        # discard: a hub with 10,000 users takes longer than the harness's 30 s to stop and is
        # killed, which once left the service running on its port into the next round.
        hub.stop(discard=True)
        shared.stop()
        if not args.keep and not args.reuse:
            shutil.rmtree(work, ignore_errors=True)
    return result


def print_table(result: dict[str, Any]) -> None:
    scale = result["scale"]
    print()
    print(
        f"| LearnHub at {scale['members']} members, {scale['courses']} courses, "
        f"{scale['servers']} running servers | |"
    )
    print("|---|---|")
    rows = [
        (f"hub start (with {scale['courses']} courses' groups)", result["hub_start_s"]),
        ("create members (bulk POST /users, 100 a call)", result.get("create_members_s")),
        (f"{result.get('entitlements')} manual grants (one transaction)", result.get("grant_s")),
        ("full membership sync (`learnhub reconcile`)", result.get("full_sync_s")),
        (f"start {scale['servers']} servers (no-op spawner)", result.get("spawn_all_s")),
    ]
    for label, seconds in rows:
        if seconds is not None:  # a reused round does not load
            print(f"| {label} | {seconds:.1f} s |")
    print(f"| servers ready while measuring | {result['ready_servers']} |")
    for label, s in {**result["hub_api"], **result["pages"]}.items():
        print(f"| {label} p50 / p95 (n={s['n']}) | {s['p50_ms']:.0f} / {s['p95_ms']:.0f} ms |")
    b = result["burst"]
    if b is not None:  # --purchases 0: no burst
        print(
            f"| burst of {b['purchases']} purchases ({b['events']} signed events, "
            f"{WEBHOOK_CLIENTS} clients): all accepted / all buyers in their groups "
            + (
                f"| {b['posted_s']:.1f} / {b['all_members_s']:.1f} s |"
                if b["all_members_s"] is not None
                else f"| {b['posted_s']:.1f} s / {b['missing_at_deadline']} of "
                f"{b['purchases']} still missing after {SYNC_TIMEOUT:.0f} s |"
            )
        )
    for name, size in result["db_mib"].items():
        print(f"| {name} | {size:.1f} MiB |")
    rss = ", ".join(f"{k} {v:.0f}" for k, v in result["rss_mib"].items() if v)
    print(f"| memory (RSS MiB) at the end | {rss} |")
    cpu = ", ".join(f"{k} {v:.0f}" for k, v in result["cpu_s"].items())
    print(f"| CPU seconds used during the run | {cpu} |")
    print(f"\nmachine: {result['machine']}")
    print(f"load average (1, 5, 15 min) before each phase: {result['loadavg']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--courses", type=int, default=200)
    parser.add_argument("--servers", type=int, default=1000)
    parser.add_argument("--purchases", type=int, default=500)
    parser.add_argument("--samples", type=int, default=200, help="per Hub API call")
    parser.add_argument("--page-samples", type=int, default=30, help="per page")
    parser.add_argument(
        "--page-budget", type=float, default=60, help="seconds per page (at least 5 samples)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument(
        "--reuse", type=Path, help="a kept folder: start its hub and measure, without loading"
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    result = run(args)
    name = f"scale-{args.members}" + (f"-round{result['round']}" if result["round"] else "")
    out = args.out or ROOT / "benchmarks" / "results" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print_table(result)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
