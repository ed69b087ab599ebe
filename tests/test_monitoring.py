"""Operators' signals: the service's metrics and health, and who may read the metrics.

One real hub (local spawner: no containers) with a metrics scraper token, reached through the
proxy under the hostile base URL: the scraper reads the Hub's ``/hub/metrics`` and the service's
``metrics``; an anonymous caller, an unknown token and a learner's token are refused with a
JSON message; genuinely signed Stripe events (and a forged one) move the webhook counters;
autograde runs recorded the way ``learnhub grader autograde`` records them show at the next
scrape; health says ok. Health turning ``degraded`` (Hub unreachable, a Stripe event stuck in
the queue) is checked on an app of its own in this process, wired to a closed port.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from traitlets.config import Config

from grader.autograde import GradeResult
from grader.course import GradingCourse
from hub.access.hub_groups import HubClient, make_access_sync
from hub.autograde_runs import record_autograde_runs
from hub.billing.client import StripeAPI
from hub.courses import Catalog, Course, CourseEntry
from hub.errors import HubAPIError
from hub.hubconfig import apply_services
from hub.metrics import METRICS_SCOPE, ServiceMetrics
from hub.privilege import service_account
from hub.service.app import make_app
from hub.service.context import build_context
from hub.service.monitoring import DatabaseCollector, Monitor
from hub.settings import Settings, load_settings
from hub.store import Database, StripeEvent, upgrade, utcnow
from hub.store import repository as repo
from tests.harness import ROOT, HubProcess, free_port, hub_settings

METRICS_TOKEN = secrets.token_hex(32)
WEBHOOK_SECRET = "whsec_" + secrets.token_hex(16)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    workdir = tmp_path_factory.mktemp("monitoring-hub")
    settings = hub_settings(workdir, courses_dir=ROOT / "courses", backend="local")
    process = HubProcess(
        workdir=workdir,
        settings=settings,
        extra_env={
            "LEARNHUB_METRICS_TOKEN": METRICS_TOKEN,
            "LEARNHUB_STRIPE_WEBHOOK_SECRETS": WEBHOOK_SECRET,
        },
    )
    try:
        process.start()
        yield process
    finally:
        process.stop()  # also when the start failed: its proxy would outlive it


def service_url(hub: HubProcess, path: str) -> str:
    return f"{hub.url}services/learnhub/{path}"


def scrape(hub: HubProcess, token: str = METRICS_TOKEN) -> dict[tuple[str, tuple[Any, ...]], float]:
    """The service's metrics as ``{(sample name, sorted labels): value}``."""
    response = httpx.get(
        service_url(hub, "metrics"), headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain")
    return samples(response.text)


def samples(text: str) -> dict[tuple[str, tuple[Any, ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(figures: dict[tuple[str, tuple[Any, ...]], float], name: str, **labels: str) -> float:
    return figures.get((name, tuple(sorted(labels.items()))), 0.0)


def learner_token(hub: HubProcess, name: str) -> str:
    """A new learner and a token of theirs with every scope they have."""
    created = hub.api("POST", f"/users/{name}")
    assert created.status_code in (201, 409), created.text
    response = hub.api("POST", f"/users/{name}/tokens", json={"note": "monitoring test"})
    assert response.status_code == 201, response.text
    return str(response.json()["token"])


def deliver(hub: HubProcess, event: dict[str, Any], secret: str = WEBHOOK_SECRET) -> httpx.Response:
    """POST ``event`` to the webhook signed as Stripe signs it, with ``secret``."""
    payload = json.dumps(event)
    header = stripe.WebhookSignature.generate_signature_header(payload, secret)
    return httpx.post(
        service_url(hub, "stripe/webhook"),
        content=payload.encode(),
        headers={"Stripe-Signature": header, "Content-Type": "application/json"},
        timeout=30,
    )


def stripe_event(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "evt_" + secrets.token_hex(12),
        "object": "event",
        "type": kind,
        "created": int(time.time()),
        "livemode": False,
        "data": {"object": obj},
    }


def wait_for(check: Any, timeout: float = 20) -> Any:
    """Poll ``check()`` until it returns something truthy (the event queue works moments after
    the webhook answered)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.1)


# -- who may read the metrics -------------------------------------------------------------------


def test_the_scraper_token_reads_the_hubs_and_the_services_metrics(hub: HubProcess) -> None:
    hub_metrics = httpx.get(
        f"{hub.url}hub/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=30
    )
    assert hub_metrics.status_code == 200, hub_metrics.text
    assert "jupyterhub_" in hub_metrics.text
    figures = scrape(hub)
    assert value(figures, "learnhub_database_up") == 1
    assert ("learnhub_event_queue_depth", ()) in figures
    assert ("learnhub_webhook_deliveries_total", (("outcome", "bad_signature"),)) in figures
    # The scraper's token reads metrics and nothing else of the Hub.
    users = httpx.get(
        f"{hub.api_url}/users", headers={"Authorization": f"token {METRICS_TOKEN}"}, timeout=30
    )
    assert users.status_code == 403


def test_anonymous_callers_unknown_tokens_and_learners_are_refused(hub: HubProcess) -> None:
    url = service_url(hub, "metrics")
    anonymous = httpx.get(url, timeout=30)
    assert anonymous.status_code == 401
    assert METRICS_SCOPE in anonymous.json()["error"]
    assert "learnhub_" not in anonymous.text
    unknown = httpx.get(url, headers={"Authorization": "Bearer not-a-token"}, timeout=30)
    assert unknown.status_code == 401
    assert "does not know this token" in unknown.json()["error"]

    token = learner_token(hub, "metrics-curious")
    learner = httpx.get(url, headers={"Authorization": f"token {token}"}, timeout=30)
    assert learner.status_code == 403
    assert f"lacks the scope {METRICS_SCOPE}" in learner.json()["error"]
    assert "learnhub_" not in learner.text
    hub_metrics = httpx.get(
        f"{hub.url}hub/metrics", headers={"Authorization": f"token {token}"}, timeout=30
    )
    assert hub_metrics.status_code == 403


# -- what the metrics count ---------------------------------------------------------------------


def test_signed_and_forged_stripe_events_move_the_webhook_counters(hub: HubProcess) -> None:
    before = scrape(hub)
    # A type LearnHub does not use: recorded as ignored at once.
    ignored = deliver(hub, stripe_event("customer.created", {"id": "cus_x", "object": "customer"}))
    assert ignored.json() == {"status": "ignored"}
    # One it uses, for a session Stripe (here: the demo's own Stripe API) never made: queued,
    # then failed for good when the re-fetch answers 404.
    missing = {"id": "cs_" + secrets.token_hex(8), "object": "checkout.session"}
    queued = deliver(hub, stripe_event("checkout.session.completed", missing))
    assert queued.json() == {"status": "queued"}
    # The same body signed with another secret: refused before anything is recorded.
    forged = deliver(hub, stripe_event("customer.created", {"id": "cus_y"}), secret="whsec_nope")
    assert forged.status_code == 400

    def moved() -> dict[tuple[str, tuple[Any, ...]], float] | None:
        after = scrape(hub)
        failed = "learnhub_stripe_events_processed_total"
        done = value(after, failed, outcome="failed") > value(before, failed, outcome="failed")
        return after if done and value(after, "learnhub_event_queue_depth") == 0 else None

    after = wait_for(moved)
    assert after is not None, "the queued event was not processed"
    deliveries = "learnhub_webhook_deliveries_total"
    for outcome in ("ignored", "queued", "bad_signature"):
        assert (
            value(after, deliveries, outcome=outcome)
            == value(before, deliveries, outcome=outcome) + 1
        ), outcome


def test_autograde_runs_recorded_by_the_grading_cli_show_at_the_next_scrape(
    hub: HubProcess,
) -> None:
    settings = load_settings(hub.config_path, {})
    entry = Catalog.load(settings.courses_dir).get("python-foundations")
    assert entry is not None
    # What `learnhub grader autograde` does after grading: as the service's account, so the
    # database stays the service's.
    course = GradingCourse.for_course(settings, entry, service_account=service_account(settings))
    sandbox = {"nb": {"outcome": "limit", "seconds": 2.5}}
    course.record_grades(
        [
            GradeResult("a", "ps1-data-model", 3, 5, "ok", "", seconds=1.5, notebooks={}),
            GradeResult("b", "ps1-data-model", 0, 5, "limit", "timeout", "", sandbox, 7.0),
        ]
    )
    after = scrape(hub)
    runs = "learnhub_autograde_submissions_total"
    assert value(after, runs, outcome="ok", reason="") == 1
    assert value(after, runs, outcome="limit", reason="timeout") == 1
    duration = "learnhub_autograde_duration_seconds"
    assert value(after, f"{duration}_bucket", outcome="limit", le="5.0") == 0
    assert value(after, f"{duration}_bucket", outcome="limit", le="10.0") == 1
    assert value(after, f"{duration}_count", outcome="ok") == 1
    assert value(after, f"{duration}_sum", outcome="ok") == pytest.approx(1.5)
    assert value(after, "learnhub_sandbox_seconds_total") == pytest.approx(2.5)


# -- health ---------------------------------------------------------------------------------------


def test_health_is_public_and_says_ok_without_secrets(hub: HubProcess) -> None:
    response = httpx.get(service_url(hub, "health"), timeout=30)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok"
    assert {name: check["ok"] for name, check in body["checks"].items()} == {
        "database": True,
        "hub": True,
        "event_queue": True,
    }
    for secret in (METRICS_TOKEN, WEBHOOK_SECRET, hub.admin_token, "metrics-curious"):
        assert secret not in response.text


@pytest.fixture
async def lone_service(tmp_path: Path) -> AsyncIterator[tuple[str, Database, Monitor]]:
    """The service's app in this process, its Hub API a closed loopback port."""
    url = f"sqlite:///{tmp_path / 'learnhub.sqlite'}"
    upgrade(url)
    db = Database(url)
    settings = Settings.model_validate(
        {
            "payments": {"provider": "stripe"},
            "monitoring": {"queue_age_alert_seconds": 600},
            "secrets": {"stripe_secret_key": "sk_test_x", "stripe_webhook_secrets": "whsec_x"},
        }
    )

    async def no_sync() -> None:
        return None

    hub_client = HubClient(f"http://127.0.0.1:{free_port()}/hub/api", "unused")
    ctx = build_context(
        settings,
        Catalog([]),
        db,
        StripeAPI("sk_test_x"),
        no_sync,
        hub_client=hub_client,
    )
    sockets = bind_sockets(0, "127.0.0.1")
    server = HTTPServer(make_app(ctx))
    server.add_sockets(sockets)
    base = f"http://127.0.0.1:{sockets[0].getsockname()[1]}"
    try:
        yield f"{base}{ctx.prefix}", db, ctx.monitor
    finally:
        server.stop()
        await ctx.monitor.aclose()
        await hub_client.aclose()
        db.dispose()


async def test_health_is_degraded_when_the_hub_is_unreachable_or_an_event_is_stuck(
    lone_service: tuple[str, Database, Monitor],
) -> None:
    prefix, db, monitor = lone_service
    monitor.health_cache_seconds = 0.0  # every request looks again, rather than once in 2 s
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.get(f"{prefix}health")
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "degraded"
        assert body["checks"]["hub"] == {"ok": False, "error": "not reachable"}
        assert body["checks"]["database"]["ok"] is True
        assert body["checks"]["event_queue"]["ok"] is True

    # An event accepted an hour ago and still queued (its re-fetch keeps failing).
    with db.transaction() as session:
        session.add(
            StripeEvent(
                event_id="evt_stuck",
                type="checkout.session.completed",
                created=utcnow() - timedelta(hours=1),
                payload={},
                received_at=utcnow() - timedelta(hours=1),
                outcome="queued",
            )
        )
    async with httpx.AsyncClient(timeout=30) as http:
        body = (await http.get(f"{prefix}health")).json()
    queue = body["checks"]["event_queue"]
    assert queue["ok"] is False and queue["depth"] == 1
    assert 3500 < queue["oldest_age_seconds"] < 3700
    assert queue["alert_after_seconds"] == 600


# -- configuration --------------------------------------------------------------------------------


def test_the_scraper_role_holds_only_the_two_metrics_scopes(tmp_path: Path) -> None:
    base = {"hub": {"data_dir": str(tmp_path / "var"), "hub_ip": "127.0.0.1"}}
    without = Config()
    apply_services(without, Settings.model_validate(base))
    assert "metrics" not in {s["name"] for s in without.JupyterHub.services}
    with_token = Config()
    apply_services(
        with_token, Settings.model_validate({**base, "secrets": {"metrics_token": METRICS_TOKEN}})
    )
    services = {s["name"]: s for s in with_token.JupyterHub.services}
    assert services["metrics"] == {"name": "metrics", "api_token": METRICS_TOKEN}
    roles = {r["name"]: r for r in with_token.JupyterHub.load_roles}
    assert roles["metrics-scraper"]["scopes"] == ["read:metrics", METRICS_SCOPE]
    assert roles["metrics-scraper"]["services"] == ["metrics"]
    assert METRICS_SCOPE in with_token.JupyterHub.custom_scopes


def test_production_refuses_a_short_metrics_token(tmp_path: Path) -> None:
    path = tmp_path / "learnhub.yaml"
    path.write_text(
        "mode: production\npayments:\n  provider: stripe\n"
        "hub:\n  public_url: https://learn.example.org/\n"
        "  subdomain_host: https://learn.example.org\n"
    )
    env = {
        "LEARNHUB_STRIPE_SECRET_KEY": "sk_test_x",
        "LEARNHUB_STRIPE_WEBHOOK_SECRETS": "whsec_x",
        "LEARNHUB_COOKIE_SECRET": secrets.token_hex(32),
        "LEARNHUB_CLI_TOKEN": secrets.token_hex(32),
        "LEARNHUB_SERVICE_TOKEN": secrets.token_hex(32),
    }
    assert load_settings(path, env).secret("metrics_token") is None
    with pytest.raises(Exception, match="LEARNHUB_METRICS_TOKEN"):
        load_settings(path, {**env, "LEARNHUB_METRICS_TOKEN": "short"})
    assert load_settings(path, {**env, "LEARNHUB_METRICS_TOKEN": METRICS_TOKEN}).secret(
        "metrics_token"
    )


def test_the_example_dashboard_and_alerts_use_only_metrics_the_service_exposes(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'learnhub.sqlite'}"
    upgrade(url)
    db = Database(url)
    try:
        record_autograde_runs(db, "c", [GradeResult("s", "a", 1, 1, "ok", "", seconds=1.0)])
        metrics = ServiceMetrics()
        metrics.registry.register(DatabaseCollector(db))
        exposed = set(samples(generate_latest(metrics.registry).decode()))
    finally:
        db.dispose()
    names = {name for name, _ in exposed}
    folder = ROOT / "deploy" / "monitoring"
    dashboard = json.loads((folder / "grafana-dashboard.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    alerts = yaml.safe_load((folder / "learnhub-alerts.yml").read_text())
    exprs += [str(rule["expr"]) for group in alerts["groups"] for rule in group["rules"]]
    used = {name for expr in exprs for name in re.findall(r"\blearnhub_[a-z_]+", expr)}
    assert used, "the dashboard and the alerts should chart LearnHub's metrics"
    assert used <= names, f"not exposed by the service: {sorted(used - names)}"
    scrape_config = yaml.safe_load((folder / "prometheus.yml").read_text())
    paths = {job["job_name"]: job["metrics_path"] for job in scrape_config["scrape_configs"]}
    assert paths == {"jupyterhub": "/hub/metrics", "learnhub": "/services/learnhub/metrics"}


class _Groups(HubClient):
    """Just enough of a Hub for the access sync: groups in memory, or down."""

    def __init__(self) -> None:
        super().__init__("http://127.0.0.1:9/hub/api", "unused")
        self.members: dict[str, set[str]] = {}
        self.down = False

    async def groups(self) -> dict[str, set[str]]:
        if self.down:
            raise HubAPIError("JupyterHub API unreachable: down")
        return {name: set(users) for name, users in self.members.items()}

    async def create_group(self, group: str) -> None:
        self.members.setdefault(group, set())

    async def add_members(self, group: str, users: Any) -> None:
        self.members[group] |= set(users)

    async def remove_members(self, group: str, users: Any) -> None:
        self.members[group] -= set(users)

    async def stop_server(self, user: str, server_name: str) -> None:
        pass


async def test_access_syncs_count_grants_revocations_and_failures(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'learnhub.sqlite'}"
    upgrade(url)
    db = Database(url)
    course = Course.model_validate(
        {"id": "py", "title": "Py", "summary": "A course.", "price": {"amount": 100}}
    )
    catalog = Catalog([CourseEntry(course=course, folder=tmp_path / "py")])
    hub = _Groups()
    hub.members["course-py"] = {"mallory"}  # in the group with no entitlement
    metrics = ServiceMetrics()
    sync = make_access_sync(db, catalog, Settings(), hub, on_sync=metrics.count_sync)
    with db.transaction() as session:
        repo.set_manual_access(session, "alice", "py", active=True, reason="test")
        repo.set_manual_access(session, "bob", "py", active=True, reason="test")
    try:
        await sync()
        assert hub.members["course-py"] == {"alice", "bob"}
        hub.down = True
        with pytest.raises(HubAPIError):
            await sync()
    finally:
        await hub.aclose()
        db.dispose()

    def count(name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(name, labels)

    assert count("learnhub_access_changes_total", change="grant") == 2
    assert count("learnhub_access_changes_total", change="revoke") == 1
    assert count("learnhub_access_syncs_total", outcome="ok") == 1
    assert count("learnhub_access_syncs_total", outcome="failed") == 1
