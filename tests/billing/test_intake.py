"""The webhook intake process (hub/billing/intake.py), on both databases.

The intake runs as the service runs it: ``python -m hub.billing.intake``, started by
:class:`WebhookIntake` with the service's settings and secrets in its environment, writing
into the same database. The service side here is the real event queue with the stand-in
Stripe and the fake Hub of the other billing tests.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe
import yaml

from harness.stripe_standin import StripeStandIn
from hub.billing.events import Recorder
from hub.billing.intake import WebhookIntake
from hub.errors import LearnHubError
from hub.metrics import ServiceMetrics
from hub.service.monitoring import Monitor
from hub.settings import Settings
from hub.store import Database
from tests.billing.conftest import PREFIX, WEBHOOK_SECRETS, FakeHub, Service
from tests.billing.test_webhook import checkout, events

PATH = f"{PREFIX}stripe/webhook"
GROUP = "course-python-101"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def intake_env(tmp_path: Path, db: Database) -> dict[str, str]:
    """The service's environment, as far as the intake reads it: settings and secrets."""
    config = tmp_path / "learnhub.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "payments": {"provider": "stripe"},
                "database": {"learnhub_url": db.engine.url.render_as_string(hide_password=False)},
                "hub": {"data_dir": str(tmp_path / "data")},
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEARNHUB_")}
    env.update(
        LEARNHUB_CONFIG=str(config),
        LEARNHUB_STRIPE_SECRET_KEY="sk_test_standin",
        LEARNHUB_STRIPE_WEBHOOK_SECRETS=",".join(WEBHOOK_SECRETS),
    )
    return env


class Intake:
    """The started intake, its URL and the metrics the service counts its outcomes in."""

    def __init__(self, process: WebhookIntake, url: str, metrics: ServiceMetrics) -> None:
        self.process = process
        self.url = url
        self.metrics = metrics

    def count(self, outcome: str) -> float:
        return self.metrics.webhooks.labels(outcome)._value.get()  # type: ignore[no-any-return]

    async def counted(self, **wanted: int) -> None:
        """Wait until the service has counted these outcomes (the intake reports after it
        answers)."""
        deadline = time.monotonic() + 10
        while any(self.count(outcome) < n for outcome, n in wanted.items()):
            assert time.monotonic() < deadline, {o: self.count(o) for o in wanted}
            await asyncio.sleep(0.05)
        assert all(self.count(outcome) == n for outcome, n in wanted.items())

    async def send(
        self, http: httpx.AsyncClient, event: dict[str, Any], *, secret: str = WEBHOOK_SECRETS[0]
    ) -> httpx.Response:
        payload = json.dumps(event)
        header = stripe.WebhookSignature.generate_signature_header(payload, secret)
        return await http.post(
            self.url, content=payload.encode(), headers={"Stripe-Signature": header}
        )


@pytest.fixture
async def intake(service: Service, db: Database, tmp_path: Path) -> AsyncIterator[Intake]:
    port = _free_port()
    metrics = ServiceMetrics()
    process = WebhookIntake(
        service.events,
        metrics,
        host="127.0.0.1",
        port=port,
        path=PATH,
        env=intake_env(tmp_path, db),
        restart_delays=(0.1,),
    )
    await process.start()
    try:
        yield Intake(process, f"http://127.0.0.1:{port}{PATH}", metrics)
    finally:
        await process.aclose()


async def member_soon(fake_hub: FakeHub, user: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while user not in fake_hub.group_members.get(GROUP, set()):
        assert time.monotonic() < deadline, f"{user} did not become a member of {GROUP}"
        await asyncio.sleep(0.05)


async def test_a_purchase_through_the_intake_makes_a_member(
    intake: Intake, service: Service, standin: StripeStandIn, fake_hub: FakeHub
) -> None:
    session_id = await checkout(service, "alice")
    deliveries = standin.sim.complete_checkout(session_id)
    for event in deliveries:
        answer = await intake.send(service.http, event)
        assert answer.status_code == 200, answer.text
    await member_soon(fake_hub, "alice")
    # Recorded once, processed once, whatever came in twice.
    again = await intake.send(service.http, deliveries[-1])
    assert again.json() == {"status": "duplicate"}
    await service.processed()
    recorded = events(service)
    assert sorted(e.outcome for e in recorded.values()).count("applied") == 1, recorded
    assert "queued" not in {e.outcome for e in recorded.values()}
    await intake.counted(duplicate=1, queued=1, ignored=len(deliveries) - 1)


async def test_the_intake_refuses_what_the_service_refuses(
    intake: Intake, service: Service
) -> None:
    event = {
        "id": "evt_forged",
        "object": "event",
        "type": "checkout.session.completed",
        "created": int(time.time()),
        "data": {"object": {"id": "cs_x", "object": "checkout.session"}},
    }
    forged = await intake.send(service.http, event, secret="whsec_attacker")
    assert (forged.status_code, forged.json()) == (400, {"error": "invalid signature"})
    unsigned = await service.http.post(intake.url, content=json.dumps(event).encode())
    assert unsigned.status_code == 400 and "Stripe-Signature" in unsigned.json()["error"]
    # Refused on its headers, before a byte of the body is read (the body is never sent here:
    # a client still sending when the answer comes may see the connection reset instead).
    reader, writer = await asyncio.open_connection("127.0.0.1", intake.process.port)
    writer.write(
        f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n"
        "Stripe-Signature: t=1,v1=0\r\n\r\n".encode()
    )
    huge = await reader.read(4096)
    writer.close()
    assert huge.startswith(b"HTTP/1.1 413") and b"1048576 bytes" in huge, huge
    elsewhere = await service.http.get(intake.url.replace("stripe/webhook", "catalog"))
    assert elsewhere.status_code == 404 and "webhook intake" in elsewhere.json()["error"]
    assert events(service) == {}
    await intake.counted(bad_signature=1, unsigned=1, too_large=1)


async def test_an_intake_that_dies_is_restarted_and_loses_nothing(
    intake: Intake, service: Service, standin: StripeStandIn, fake_hub: FakeHub, db: Database
) -> None:
    # Alice's events were recorded by the intake, which died before it told the service.
    session_id = await checkout(service, "alice")
    recorder = Recorder(db)
    for event in standin.sim.complete_checkout(session_id):
        await recorder.accept(event)
    recorder.close()
    first = intake.process.pid
    assert first is not None
    monitor = Monitor(Settings(), db, ServiceMetrics(), hub_api_url=None)
    monitor.health_cache_seconds = 0
    monitor.webhook_intake = intake.process
    assert (await monitor.health())[1]["checks"]["webhook_intake"] == {"ok": True, "starts": 1}
    os.kill(first, signal.SIGKILL)
    # The service's health says so until the intake listens again.
    await asyncio.wait_for(intake.process._process.wait(), 10)  # type: ignore[union-attr]
    assert (await monitor.health())[1]["checks"]["webhook_intake"]["ok"] is False
    deadline = time.monotonic() + 20
    while intake.process.pid in (None, first):
        assert time.monotonic() < deadline, "the intake was not restarted"
        await asyncio.sleep(0.05)
    assert intake.process.starts == 2
    assert (await monitor.health())[1]["checks"]["webhook_intake"] == {"ok": True, "starts": 2}
    await monitor.aclose()
    await member_soon(fake_hub, "alice")
    # The new intake takes deliveries.
    session_id = await checkout(service, "bob")
    for event in standin.sim.complete_checkout(session_id):
        assert (await intake.send(service.http, event)).status_code == 200
    await member_soon(fake_hub, "bob")


async def test_a_taken_port_stops_the_start_with_the_setting_to_change(
    service: Service, db: Database, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        process = WebhookIntake(
            service.events,
            ServiceMetrics(),
            host="127.0.0.1",
            port=taken.getsockname()[1],
            path=PATH,
            env=intake_env(tmp_path, db),
        )
        with pytest.raises(LearnHubError, match=r"hub\.webhook_port"):
            await process.start()
        assert process.pid is None


async def test_closing_stops_the_intake_quietly(intake: Intake) -> None:
    running = intake.process._process
    assert running is not None and running.returncode is None
    await intake.process.aclose()
    assert running.returncode == 0
