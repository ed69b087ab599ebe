"""Money from what was paid: attacks on access and revenue, over real HTTP with signed events.

Every test drives the real service (tornado, the event queue, SQLite and PostgreSQL) with
genuinely signed Stripe events, and the real ``stripe`` library re-fetching from the loopback
stand-in. Courses have configured Stripe prices here, as after ``learnhub stripe sync``.
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
from typing import Any

import pytest
import sqlalchemy as sa
import stripe

from harness.stripe_standin import StripeStandIn
from hub.service.dashboard_data import revenue_totals
from hub.service.reports import Revenue
from hub.settings import Settings
from hub.store import Entitlement, StripeEvent
from hub.store import repository as repo
from tests.billing.conftest import WEBHOOK_SECRETS, FakeHub, Service
from tests.billing.test_webhook import GROUP, buy, checkout

PRICES = {"python-101": "price_python101", "data-201": "price_data201"}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The shared settings, with a configured Stripe price per paid course."""
    return settings.model_copy(
        update={"payments": settings.payments.model_copy(update={"course_price_ids": dict(PRICES)})}
    )


@pytest.fixture(autouse=True)
def prices(standin: StripeStandIn) -> None:
    """The configured prices exist at Stripe (both courses cost 49.00 USD)."""
    for course_id, price_id in PRICES.items():
        standin.store.put(
            {
                "id": price_id,
                "object": "price",
                "active": True,
                "currency": "usd",
                "unit_amount": 4900,
                "product": f"prod_{course_id}",
                "type": "one_time",
                "recurring": None,
                "metadata": {"learnhub_course": course_id},
                "livemode": False,
            }
        )


def entitlement_states(service: Service) -> list[tuple[str, str | None, str]]:
    with service.billing.db.transaction() as session:
        rows = session.scalars(sa.select(Entitlement).order_by(Entitlement.id))
        return [(e.username, e.course_id, e.status) for e in rows]


def outcome(service: Service, event_id: str) -> tuple[str, str | None]:
    with service.billing.db.transaction() as session:
        row = session.scalars(sa.select(StripeEvent).where(StripeEvent.event_id == event_id)).one()
        return row.outcome, row.error


def revenue(service: Service) -> Revenue:
    """R as the operator dashboard computes it (the database's sum of the ledger)."""
    with service.billing.db.transaction() as session:
        return revenue_totals(session)


def completed(events: list[dict[str, Any]]) -> dict[str, Any]:
    [event] = [e for e in events if e["type"] == "checkout.session.completed"]
    return event


# -- access from what was paid -------------------------------------------------------------------


async def test_line_item_of_another_course_grants_nothing(
    service: Service, standin: StripeStandIn, fake_hub: FakeHub
) -> None:
    session_id = await checkout(service, "alice", "python-101")
    # Same amount and currency, but the line item sells data-201; metadata still says python-101.
    item = standin.store.objects[session_id]["_line_item_objects"][0]
    item["price"] = copy.deepcopy(standin.store.objects[PRICES["data-201"]])
    evs = standin.sim.complete_checkout(session_id)
    await service.send_all(evs)
    assert entitlement_states(service) == []
    assert fake_hub.adds(GROUP) == []
    state, _ = outcome(service, completed(evs)["id"])
    assert state == "ignored"
    assert revenue(service).gross == {}


@pytest.mark.parametrize(
    ("amount", "currency"), [(100, "usd"), (4900, "jpy")], ids=["amount", "currency"]
)
async def test_wrong_amount_or_currency_grants_nothing(
    service: Service, standin: StripeStandIn, fake_hub: FakeHub, amount: int, currency: str
) -> None:
    session_id = await checkout(service, "alice", "python-101")
    session = standin.store.objects[session_id]
    item = session["_line_item_objects"][0]
    item["price"]["unit_amount"] = amount
    item["price"]["currency"] = item["currency"] = session["currency"] = currency
    item["amount_subtotal"] = item["amount_total"] = session["amount_total"] = amount
    await service.send_all(standin.sim.complete_checkout(session_id))
    assert entitlement_states(service) == []
    assert fake_hub.adds(GROUP) == []


async def test_session_learnhub_did_not_create_grants_nothing(
    service: Service, standin: StripeStandIn, fake_hub: FakeHub
) -> None:
    # Made on the same Stripe account by something else, with LearnHub-looking metadata.
    foreign = standin.course_checkout("alice", "python-101", 4900, "Course python-101")
    await service.send_all(standin.sim.complete_checkout(foreign))
    assert entitlement_states(service) == []
    assert fake_hub.adds(GROUP) == []


async def test_session_created_for_another_user_grants_nothing(
    service: Service, standin: StripeStandIn, fake_hub: FakeHub
) -> None:
    # LearnHub created it for bob; the Stripe object now names alice.
    session_id = await checkout(service, "bob", "python-101")
    session = standin.store.objects[session_id]
    session["client_reference_id"] = "alice"
    session["metadata"]["learnhub_user"] = "alice"
    await service.send_all(standin.sim.complete_checkout(session_id))
    assert ("alice", "python-101", "active") not in entitlement_states(service)
    assert fake_hub.adds(GROUP) == []


async def test_subscription_learnhub_did_not_sell_grants_nothing(
    service: Service, standin: StripeStandIn, fake_hub: FakeHub
) -> None:
    metadata = {"learnhub_user": "alice", "learnhub_plan": "all-access"}
    foreign = standin.client().v1.checkout.sessions.create(
        {
            "mode": "subscription",
            "client_reference_id": "alice",
            "metadata": metadata,
            "subscription_data": {"metadata": metadata},
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": "usd",
                        "unit_amount": 2900,
                        "recurring": {"interval": "month"},
                        "product_data": {"name": "All access"},
                    },
                }
            ],
            "success_url": "http://127.0.0.1/success",
            "cancel_url": "http://127.0.0.1/cancel",
        }
    )
    await service.send_all(standin.sim.complete_checkout(str(foreign.id)))
    assert entitlement_states(service) == []
    assert fake_hub.adds(GROUP) == []
    assert revenue(service).gross == {}


async def test_checkout_does_not_allow_the_accounts_promotion_codes(
    service: Service, standin: StripeStandIn
) -> None:
    session_id = await checkout(service, "alice", "python-101")
    assert standin.store.objects[session_id]["allow_promotion_codes"] is False


# -- revenue from verified objects ---------------------------------------------------------------


async def test_forged_revenue_event_does_not_raise_revenue(
    service: Service, standin: StripeStandIn
) -> None:
    await buy(service, standin, "alice")
    assert revenue(service).net == {"usd": 4900}
    # Someone else's 1.23 USD checkout on the same Stripe account: a genuine, signed event.
    other = standin.course_checkout("mallory", "python-101", 123, "Sticker")
    await service.send_all(standin.sim.complete_checkout(other))
    assert revenue(service).net == {"usd": 4900}
    assert revenue(service).by_course == {"python-101": {"usd": 4900}}


async def test_later_payload_with_another_amount_does_not_change_revenue(
    service: Service, standin: StripeStandIn
) -> None:
    session_id = await checkout(service, "alice", "python-101")
    evs = standin.sim.complete_checkout(session_id)
    await service.send_all(evs)
    assert revenue(service).net == {"usd": 4900}
    later = standin.sim.event("checkout.session.completed", standin.store.objects[session_id])
    later["data"]["object"]["amount_total"] = 1
    await service.send_all([later])
    assert revenue(service).net == {"usd": 4900}


async def test_refund_is_taken_from_revenue_as_stripe_reports_it(
    service: Service, standin: StripeStandIn
) -> None:
    _, charge_id = await buy(service, standin, "alice")
    charge = standin.store.objects[charge_id]
    charge["amount_refunded"] = 1000  # a partial refund at Stripe
    refunded = standin.sim.event("charge.refunded", charge)
    # The payload claims the whole charge came back; Stripe's charge says 10.00.
    refunded["data"]["object"]["amount_refunded"] = 4900
    await service.send_all([refunded])
    r = revenue(service)
    assert (r.gross, r.refunded, r.net) == ({"usd": 4900}, {"usd": 1000}, {"usd": 3900})
    assert r.by_course == {"python-101": {"usd": 3900}}


async def test_full_refund_leaves_no_revenue_and_no_access(
    service: Service, standin: StripeStandIn
) -> None:
    _, charge_id = await buy(service, standin, "alice")
    await service.send_all(standin.sim.refund(charge_id))
    assert revenue(service).net == {"usd": 0}
    assert entitlement_states(service) == [("alice", "python-101", "revoked")]


# -- failures and operator decisions -------------------------------------------------------------


async def test_object_stripe_does_not_have_is_a_permanent_failure_recorded_once(
    service: Service, standin: StripeStandIn
) -> None:
    event = standin.sim.event(
        "checkout.session.completed", {"id": "cs_test_gone", "object": "checkout.session"}
    )
    await service.send_all([event])
    await asyncio.sleep(0.5)  # the queue retries after 0.05 s, 0.1 s ... here: were it to retry
    state, error = outcome(service, event["id"])
    assert state == "failed"
    assert error is not None and "cs_test_gone" in error
    fetches = [r for r in standin.requests if r[1] == "/v1/checkout/sessions/cs_test_gone"]
    assert len(fetches) == 1
    assert service.events.waiting_for_retry == 0


async def test_operator_revoke_holds_when_an_old_event_is_replayed(
    service: Service, standin: StripeStandIn, fake_hub: FakeHub
) -> None:
    session_id, _ = await buy(service, standin, "alice")
    with service.billing.db.transaction() as session:
        # What `learnhub revoke alice python-101` does.
        repo.revoke_course(session, "alice", "python-101", reason="revoked by operator")
    await service.billing.sync("alice")
    assert "alice" not in fake_hub.group_members[GROUP]
    # Any later event about the same old checkout: Stripe still reports it paid.
    again = standin.sim.event("checkout.session.completed", standin.store.objects[session_id])
    await service.send_all([again])
    assert entitlement_states(service) == [("alice", "python-101", "revoked")]
    assert "alice" not in fake_hub.group_members[GROUP]


async def test_new_payment_after_operator_revoke_gives_access_again(
    service: Service, standin: StripeStandIn, fake_hub: FakeHub
) -> None:
    await buy(service, standin, "alice")
    with service.billing.db.transaction() as session:
        repo.revoke_course(session, "alice", "python-101", reason="revoked by operator")
    await service.billing.sync("alice")
    await buy(service, standin, "alice")
    states = entitlement_states(service)
    assert states == [("alice", "python-101", "revoked"), ("alice", "python-101", "active")]
    assert "alice" in fake_hub.group_members[GROUP]
    assert revenue(service).net == {"usd": 9800}


# -- the webhook body limit ----------------------------------------------------------------------


async def test_webhook_body_over_one_megabyte_is_refused_before_signature_work(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    checks: list[str] = []
    verify = stripe.WebhookSignature.verify_header

    def counting(*args: Any, **kwargs: Any) -> Any:
        checks.append("verify")
        return verify(*args, **kwargs)

    monkeypatch.setattr(stripe.WebhookSignature, "verify_header", counting)
    event = {
        "id": "evt_test_big",
        "object": "event",
        "type": "customer.created",
        "created": int(time.time()),
        "data": {"object": {"id": "cus_1", "object": "customer", "note": "x" * 2_000_000}},
    }
    payload = json.dumps(event)
    header = stripe.WebhookSignature.generate_signature_header(payload, WEBHOOK_SECRETS[0])
    response = await service.http.post(
        service.webhook, content=payload.encode(), headers={"Stripe-Signature": header}
    )
    assert response.status_code == 413
    assert "1048576 bytes" in response.json()["error"]
    assert checks == []
    with service.billing.db.transaction() as session:
        assert session.scalars(sa.select(StripeEvent)).all() == []
    # A normal event still goes through on the same route.
    small = dict(event, id="evt_test_small", data={"object": {"id": "cus_1"}})
    assert (await service.send(small)).json() == {"status": "ignored"}
    assert checks == ["verify"]
