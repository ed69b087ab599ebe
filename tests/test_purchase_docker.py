"""Payment is access, end to end on real parts.

A real hub + proxy + LearnHub service on real Docker, with `payments.provider: stripe` pointed at
a loopback stand-in of Stripe's API. Events are Stripe-shaped, signed with Stripe's algorithm by
the real `stripe` library and posted through the public proxy to the webhook. A purchase puts the
learner in the course group so they can start the course; a refund takes them out and stops the
server; a re-purchase gives their files back.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe

from harness import flows
from harness.stripe_standin import API_KEY, StripeStandIn
from tests.harness import (
    HubProcess,
    browser,
    hub_settings,
    members,
    open_course,
    running,
    server_stopped,
    wait_until,
    webhook_url,
)

pytestmark = [pytest.mark.docker]

COURSE = "algorithms-in-python"
LEARNER = "lin-purchase"
PASSWORD = "dynamic-programming-42"
WEBHOOK_SECRET = "whsec_" + secrets.token_hex(16)


@pytest.fixture(scope="module")
def standin() -> Iterator[StripeStandIn]:
    server = StripeStandIn().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def paid_hub(
    images: None,
    docker_prefix_cleanup: None,
    courses_dir: Path,
    standin: StripeStandIn,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[HubProcess]:
    workdir = tmp_path_factory.mktemp("paid-hub")
    settings = hub_settings(workdir, courses_dir=courses_dir)
    settings["payments"] = {"provider": "stripe", "stripe_api_base": standin.url}
    standin.record_sessions_in = f"sqlite:///{workdir / 'var' / 'service' / 'learnhub.sqlite'}"
    hub = HubProcess(
        workdir=workdir,
        settings=settings,
        extra_env={
            "LEARNHUB_STRIPE_SECRET_KEY": API_KEY,
            "LEARNHUB_STRIPE_WEBHOOK_SECRETS": f"whsec_old_rotated_out,{WEBHOOK_SECRET}",
        },
    )
    with running(hub):
        try:
            yield hub
        finally:
            if hub.proc is not None:
                print("===== paid hub log =====\n" + hub.log_tail(80))


def deliver(hub: HubProcess, events: list[dict[str, Any]], secret: str = WEBHOOK_SECRET) -> None:
    flows.deliver(hub, events, secret)


def new_checkout_session(standin: StripeStandIn, user: str) -> str:
    """What Stripe holds once the learner's checkout session exists (as the service creates it)."""
    return standin.course_checkout(user, COURSE, 6900, "Algorithms in Python")


def test_forged_and_malformed_webhooks_are_refused_with_a_reason(paid_hub: HubProcess) -> None:
    payload = json.dumps({"id": "evt_forged", "type": "checkout.session.completed"})
    forged = stripe.WebhookSignature.generate_signature_header(payload, "whsec_not_ours")
    response = httpx.post(
        webhook_url(paid_hub), content=payload, headers={"Stripe-Signature": forged}, timeout=30
    )
    assert response.status_code == 400
    assert "signature" in response.json()["error"].lower()
    unsigned = httpx.post(webhook_url(paid_hub), content=b"{not json", timeout=30)
    assert unsigned.status_code == 400
    assert unsigned.json()["error"]


def test_purchase_refund_repurchase(paid_hub: HubProcess, standin: StripeStandIn) -> None:
    group = f"course-{COURSE}"
    with browser(paid_hub) as b:
        b.signup(LEARNER, PASSWORD)
        assert b.login(LEARNER, PASSWORD).status_code == 200
        assert b.spawn_course(LEARNER, COURSE).status_code == 403

        # Pay: Stripe sends charge.succeeded and checkout.session.completed.
        first = new_checkout_session(standin, LEARNER)
        deliver(paid_hub, standin.sim.complete_checkout(first))
        wait_until(lambda: LEARNER in members(paid_hub, group), "membership after payment")

        url = open_course(b, paid_hub, LEARNER, COURSE)
        assert b.put_file(url, "my-solution.py", "print(42)\n").status_code == 201

        # Refund: out of the group, and the running course server is stopped.
        intent = standin.store.objects[standin.store.objects[first]["payment_intent"]]
        deliver(paid_hub, standin.sim.refund(str(intent["latest_charge"])))
        wait_until(lambda: LEARNER not in members(paid_hub, group), "removal after refund")
        wait_until(lambda: server_stopped(paid_hub, LEARNER, COURSE), "the course server to stop")
        assert b.spawn_course(LEARNER, COURSE).status_code == 403

        # The same event again changes nothing (recorded once).
        again = standin.sim.event("charge.refunded", standin.store.objects[intent["latest_charge"]])
        deliver(paid_hub, [again, again])

        # Re-purchase: access again, and the learner's file is still there.
        second = new_checkout_session(standin, LEARNER)
        deliver(paid_hub, standin.sim.complete_checkout(second))
        wait_until(lambda: LEARNER in members(paid_hub, group), "membership after re-purchase")
        url = open_course(b, paid_hub, LEARNER, COURSE)
        mine = b.contents(url, "my-solution.py")
        assert mine.status_code == 200
        assert mine.json()["content"] == "print(42)\n"
    home = f"{paid_hub.prefix}-lin-2dpurchase--algorithms-2din-2dpython.ext4"
    assert (paid_hub.data_dir / "homes" / home).is_file()


def test_missed_webhook_is_healed_by_learnhub_reconcile(
    paid_hub: HubProcess, standin: StripeStandIn
) -> None:
    user = "missed-webhook"
    paid_hub.api("POST", "/users", json={"usernames": [user]})
    # Stripe took the payment, but the webhook never arrived (LearnHub was down).
    standin.sim.complete_checkout(new_checkout_session(standin, user))
    assert user not in members(paid_hub, f"course-{COURSE}")

    result = subprocess.run(
        [sys.executable, "-m", "hub.cli", "reconcile"],
        env=paid_hub.env(),
        capture_output=True,
        text=True,
        check=False,
        cwd=paid_hub.workdir,
    )
    assert result.returncode == 0, result.stderr
    assert "course membership re-applied" in result.stdout
    assert user in members(paid_hub, f"course-{COURSE}")
