"""The Stripe webhook over real HTTP: verification, exactly-once, fresh re-fetches, access."""

from __future__ import annotations

import asyncio
import json
import random
import time
from typing import Any

import pytest
import sqlalchemy as sa
import stripe

from harness.stripe_standin import StripeStandIn
from hub.access.hub_groups import make_access_sync
from hub.billing.events import EventQueue
from hub.billing.reconcile import reconcile
from hub.courses import Catalog
from hub.service.context import build_context
from hub.settings import Settings
from hub.store import Entitlement, StripeEvent
from hub.store import repository as repo
from tests.billing.conftest import PREFIX, FakeHub, Service

GROUP = "course-python-101"


def entitlements(service: Service) -> list[Entitlement]:
    with service.billing.db.transaction() as session:
        return list(session.scalars(sa.select(Entitlement).order_by(Entitlement.id)))


def events(service: Service) -> dict[str, StripeEvent]:
    with service.billing.db.transaction() as session:
        return {e.event_id: e for e in session.scalars(sa.select(StripeEvent))}


async def checkout(
    service: Service, user: str, course_id: str = "python-101", *, plan: bool = False
) -> str:
    """Create a Checkout Session through the service, as the learner's browser would."""
    path = f"{PREFIX}checkout/plan/{course_id}" if plan else f"{PREFIX}checkout/{course_id}"
    response = await service.http.post(
        service.url + path, headers={"X-Test-User": user, "Accept": "application/json"}
    )
    assert response.status_code == 200, response.text
    url = response.json()["url"]
    return str(url.rsplit("/", 1)[1])


async def buy(service: Service, standin: StripeStandIn, user: str) -> tuple[str, str]:
    """Buy python-101 and deliver Stripe's events; returns (session id, charge id)."""
    session_id = await checkout(service, user)
    await service.send_all(standin.sim.complete_checkout(session_id))
    session = standin.store.objects[session_id]
    charge = standin.store.objects[session["payment_intent"]]["latest_charge"]
    return session_id, str(charge)


async def subscribe(service: Service, standin: StripeStandIn, user: str) -> tuple[str, list[Any]]:
    """Create a plan checkout and pay it at Stripe; return (subscription id, its events)."""
    session_id = await checkout(service, user, "all-access", plan=True)
    evs = standin.sim.complete_checkout(session_id)
    return str(standin.store.objects[session_id]["subscription"]), evs


# -- verification ---------------------------------------------------------------------------------


def _event(event_type: str = "checkout.session.completed") -> dict[str, Any]:
    return {
        "id": "evt_test_1",
        "object": "event",
        "type": event_type,
        "created": int(time.time()),
        "data": {"object": {"id": "cs_test_missing", "object": "checkout.session"}},
    }


async def test_forged_signature_is_rejected(service: Service) -> None:
    response = await service.send(_event(), secret="whsec_attacker")
    assert response.status_code == 400
    assert response.json() == {"error": "invalid signature"}
    assert events(service) == {}


async def test_missing_signature_is_rejected(service: Service) -> None:
    response = await service.http.post(service.webhook, content=json.dumps(_event()).encode())
    assert response.status_code == 400
    assert "Stripe-Signature" in response.json()["error"]


async def test_stale_timestamp_is_rejected(service: Service) -> None:
    response = await service.send(_event(), timestamp=int(time.time()) - 301)
    assert response.status_code == 400
    assert response.json()["error"].startswith("stale timestamp")
    assert events(service) == {}


async def test_malformed_body_is_rejected(service: Service) -> None:
    payload = "{not json"
    header = stripe.WebhookSignature.generate_signature_header(payload, "whsec_current_test")
    response = await service.http.post(
        service.webhook, content=payload.encode(), headers={"Stripe-Signature": header}
    )
    assert response.status_code == 400
    assert response.json()["error"].startswith("malformed body")


async def test_previous_secret_still_accepted_during_rotation(service: Service) -> None:
    response = await service.send(_event("customer.created"), secret="whsec_previous_test")
    assert response.status_code == 200
    assert response.json() == {"status": "ignored"}


async def test_unknown_event_type_is_recorded_and_ignored(service: Service) -> None:
    response = await service.send(_event("balance.available"))
    assert response.status_code == 200
    assert response.json() == {"status": "ignored"}
    recorded = events(service)["evt_test_1"]
    assert recorded.outcome == "ignored"
    assert recorded.type == "balance.available"


# -- purchases ------------------------------------------------------------------------------------


async def test_same_event_ten_times_grants_once(
    service: Service, standin: StripeStandIn, fake_hub: FakeHub
) -> None:
    session_id = await checkout(service, "alice")
    completed = standin.sim.complete_checkout(session_id)[-1]
    statuses = [(await service.send(completed)).json()["status"] for _ in range(10)]
    assert statuses == ["queued"] + ["duplicate"] * 9
    await service.processed()
    assert events(service)[completed["id"]].outcome == "applied"
    assert [(await service.send(completed)).json()["status"]] == ["duplicate"]
    [ent] = entitlements(service)
    assert (ent.username, ent.course_id, ent.status, ent.source) == (
        "alice",
        "python-101",
        "active",
        "purchase",
    )
    assert fake_hub.adds(GROUP) == [frozenset({"alice"})]
    assert len(events(service)) == 1


async def test_success_page_and_webhook_share_fulfilment(
    service: Service, standin: StripeStandIn, fake_hub: FakeHub
) -> None:
    session_id = await checkout(service, "alice")
    evs = standin.sim.complete_checkout(session_id)
    page = await service.http.get(
        f"{service.url}{PREFIX}checkout/success?session_id={session_id}",
        headers={"X-Test-User": "alice", "Accept": "application/json"},
    )
    assert page.json() == {"status": "active", "course": "python-101", "plan": None}
    other = await service.http.get(
        f"{service.url}{PREFIX}checkout/success?session_id={session_id}",
        headers={"X-Test-User": "bob"},
    )
    assert other.status_code == 404
    await service.send_all(evs)
    assert len(entitlements(service)) == 1
    assert fake_hub.adds(GROUP) == [frozenset({"alice"})]


async def test_success_page_loses_the_race_to_the_queue_and_still_answers(
    service: Service, standin: StripeStandIn, fake_hub: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The success page and the webhook's queue fulfil the same checkout at the same moment:
    # the queue's insert commits between the page's read and its own insert.
    session_id = await checkout(service, "alice")
    standin.sim.complete_checkout(session_id)  # paid at Stripe; its events are not delivered
    real_apply = repo.apply_update
    raced: list[bool] = []

    def queue_commits_first(session: Any, update: Any) -> bool:
        add = session.add

        def add_after_the_queue(row: Any) -> None:
            # After this transaction found no entitlement, before it inserts one.
            if not raced:
                raced.append(True)
                with service.billing.db.transaction() as other:
                    real_apply(other, update)
            add(row)

        session.add = add_after_the_queue
        return real_apply(session, update)

    monkeypatch.setattr(repo, "apply_update", queue_commits_first)
    page = await service.http.get(
        f"{service.url}{PREFIX}checkout/success?session_id={session_id}",
        headers={"X-Test-User": "alice", "Accept": "application/json"},
    )
    assert raced == [True]
    assert page.status_code == 200, page.text
    assert page.json() == {"status": "active", "course": "python-101", "plan": None}
    [ent] = entitlements(service)
    assert (ent.username, ent.course_id, ent.status) == ("alice", "python-101", "active")


async def test_checkout_session_carries_metadata_everywhere(
    service: Service, standin: StripeStandIn
) -> None:
    session_id = await checkout(service, "d@ve.o'neil")
    session = standin.store.objects[session_id]
    meta = {"learnhub_user": "d@ve.o'neil", "learnhub_course": "python-101"}
    assert session["client_reference_id"] == "d@ve.o'neil"
    assert session["metadata"] == meta
    assert session["_payment_intent_data"]["metadata"] == meta
    assert session["allow_promotion_codes"] is False
    assert session["mode"] == "payment"


async def test_checkout_refused_when_learner_has_access(
    service: Service, standin: StripeStandIn
) -> None:
    await buy(service, standin, "alice")
    response = await service.http.post(
        f"{service.url}{PREFIX}checkout/python-101",
        headers={"X-Test-User": "alice", "Accept": "application/json"},
    )
    assert response.status_code == 409
    assert "already have access" in response.json()["error"]
    free = await service.http.post(
        f"{service.url}{PREFIX}checkout/intro",
        headers={"X-Test-User": "alice", "Accept": "application/json"},
    )
    assert free.status_code == 400


async def test_refund_after_grant_revokes(
    service: Service, standin: StripeStandIn, fake_hub: FakeHub
) -> None:
    _, charge = await buy(service, standin, "alice")
    assert fake_hub.group_members[GROUP] == {"alice"}
    await service.send_all(standin.sim.refund(charge))
    [ent] = entitlements(service)
    assert (ent.status, ent.status_reason) == ("revoked", "refunded")
    assert fake_hub.group_members[GROUP] == set()
    assert ("stop", "alice", "python-101") in fake_hub.calls


async def test_late_checkout_completed_after_refund_does_not_regrant(
    service: Service, standin: StripeStandIn, fake_hub: FakeHub
) -> None:
    session_id = await checkout(service, "alice")
    evs = standin.sim.complete_checkout(session_id)
    charge = standin.store.objects[standin.store.objects[session_id]["payment_intent"]][
        "latest_charge"
    ]
    refund = standin.sim.refund(charge)
    await service.send_all(refund + evs)  # the refund arrives first
    [ent] = entitlements(service)
    assert ent.status == "revoked"
    assert fake_hub.group_members.get(GROUP, set()) == set()


async def test_dispute_lost_revokes(
    service: Service, standin: StripeStandIn, fake_hub: FakeHub
) -> None:
    _, charge = await buy(service, standin, "alice")
    dispute_id, opened = standin.sim.open_dispute(charge)
    await service.send_all(opened)
    assert entitlements(service)[0].status_reason == "dispute_open"
    await service.send_all(standin.sim.close_dispute(dispute_id, won=False))
    [ent] = entitlements(service)
    assert (ent.status, ent.status_reason) == ("revoked", "dispute_lost")
    assert fake_hub.group_members[GROUP] == set()


async def test_dispute_won_restores(
    service: Service, standin: StripeStandIn, fake_hub: FakeHub
) -> None:
    _, charge = await buy(service, standin, "alice")
    dispute_id, opened = standin.sim.open_dispute(charge)
    await service.send_all(opened)
    assert fake_hub.group_members[GROUP] == set()
    await service.send_all(standin.sim.close_dispute(dispute_id, won=True))
    assert entitlements(service)[0].status == "active"
    assert fake_hub.group_members[GROUP] == {"alice"}
    # The `created` event redelivered late under a new id reads the fresh dispute: still won.
    late = dict(opened[0], id="evt_test_late_dispute")
    await service.send_all([late])
    assert fake_hub.group_members[GROUP] == {"alice"}


async def test_async_payment_pending_then_succeeded(
    service: Service, standin: StripeStandIn, fake_hub: FakeHub
) -> None:
    session_id = await checkout(service, "alice")
    await service.send_all(standin.sim.complete_checkout(session_id, async_payment=True))
    assert entitlements(service)[0].status == "pending"
    assert "alice" not in fake_hub.group_members.get(GROUP, set())
    await service.send_all(standin.sim.settle_async_payment(session_id, succeeded=True))
    assert entitlements(service)[0].status == "active"
    assert fake_hub.group_members[GROUP] == {"alice"}


async def test_async_payment_failed(service: Service, standin: StripeStandIn) -> None:
    session_id = await checkout(service, "alice")
    await service.send_all(standin.sim.complete_checkout(session_id, async_payment=True))
    await service.send_all(standin.sim.settle_async_payment(session_id, succeeded=False))
    [ent] = entitlements(service)
    assert (ent.status, ent.status_reason) == ("revoked", "payment_failed")


# -- subscriptions --------------------------------------------------------------------------------


async def test_shuffled_subscription_events_converge(
    service: Service, standin: StripeStandIn, fake_hub: FakeHub
) -> None:
    sub_id, evs = await subscribe(service, standin, "bob")
    random.Random(7).shuffle(evs)
    await service.send_all(evs)
    [ent] = entitlements(service)
    assert (ent.plan_id, ent.status, ent.stripe_subscription_id) == ("all-access", "active", sub_id)
    assert fake_hub.group_members["course-python-101"] == {"bob"}
    assert fake_hub.group_members["course-data-201"] == {"bob"}
    assert fake_hub.group_members["course-intro"] == {"bob"}


async def test_late_subscription_created_cannot_undo_cancellation(
    service: Service, standin: StripeStandIn, fake_hub: FakeHub
) -> None:
    _, evs = await subscribe(service, standin, "bob")
    created = next(e for e in evs if e["type"] == "customer.subscription.created")
    rest = [e for e in evs if e is not created]
    sub_id = created["data"]["object"]["id"]
    deleted = standin.sim.cancel(sub_id, at_period_end=False)
    await service.send_all(rest + deleted + [created])
    [ent] = entitlements(service)
    assert (ent.status, ent.status_reason) == ("revoked", "canceled")
    assert fake_hub.group_members["course-data-201"] == set()


async def test_cancellation_at_period_end(
    service: Service, standin: StripeStandIn, fake_hub: FakeHub
) -> None:
    sub_id, evs = await subscribe(service, standin, "bob")
    await service.send_all(evs)
    await service.send_all(standin.sim.cancel(sub_id, at_period_end=True))
    [ent] = entitlements(service)
    assert (ent.status, ent.status_reason) == ("active", "cancel_at_period_end")
    assert fake_hub.group_members["course-python-101"] == {"bob"}
    await service.send_all(standin.sim.end_subscription(sub_id))
    assert entitlements(service)[0].status == "revoked"
    assert fake_hub.group_members["course-python-101"] == set()


async def test_payment_failed_then_paid(
    service: Service, standin: StripeStandIn, fake_hub: FakeHub
) -> None:
    sub_id, evs = await subscribe(service, standin, "bob")
    await service.send_all(evs)
    # Renewal was a day ago and failed: past_due, but within the 3-day grace period.
    sub = standin.store.objects[sub_id]
    item = sub["items"]["data"][0]
    item["current_period_end"] = int(time.time()) - 86400
    invoice_id, failed = standin.sim.renew(sub_id, paid=False)
    await service.send_all(failed)
    [ent] = entitlements(service)
    assert ent.status == "past_due"
    assert ent.period_end is not None and ent.period_end.timestamp() == item["current_period_start"]
    assert fake_hub.group_members["course-python-101"] == {"bob"}
    await service.send_all(standin.sim.pay_invoice(invoice_id))
    assert entitlements(service)[0].status == "active"
    assert fake_hub.group_members["course-python-101"] == {"bob"}


async def test_past_due_beyond_grace_loses_access(
    service: Service, standin: StripeStandIn, fake_hub: FakeHub
) -> None:
    sub_id, evs = await subscribe(service, standin, "bob")
    await service.send_all(evs)
    standin.store.objects[sub_id]["items"]["data"][0]["current_period_end"] = (
        int(time.time()) - 4 * 86400
    )
    _, failed = standin.sim.renew(sub_id, paid=False)
    await service.send_all(failed)
    assert entitlements(service)[0].status == "past_due"
    assert fake_hub.group_members["course-python-101"] == set()


# -- the Hub, users, the catalog ------------------------------------------------------------------


async def test_hub_down_then_reconcile_heals(
    service: Service, standin: StripeStandIn, fake_hub: FakeHub
) -> None:
    fake_hub.down = True
    await buy(service, standin, "alice")
    assert entitlements(service)[0].status == "active"  # recorded although the Hub was down
    assert GROUP not in fake_hub.group_members
    fake_hub.down = False
    report = await reconcile(service.billing)
    assert report.synced
    assert report.events_applied == []  # everything was already recorded
    assert fake_hub.group_members[GROUP] == {"alice"}


async def test_reconcile_applies_missed_events(
    service: Service, standin: StripeStandIn, fake_hub: FakeHub
) -> None:
    session_id = await checkout(service, "alice")
    standin.sim.complete_checkout(session_id)  # the webhooks never arrive
    sub_id, _ = await subscribe(service, standin, "bob")
    report = await reconcile(service.billing)
    assert len(report.events_applied) == report.events_seen
    assert fake_hub.group_members[GROUP] == {"alice", "bob"}
    # A cancellation that was never delivered is found by re-checking live subscriptions.
    standin.store.objects[sub_id]["status"] = "canceled"
    report = await reconcile(service.billing)
    assert report.subscriptions_changed == [sub_id]
    assert fake_hub.group_members[GROUP] == {"alice"}


async def until(condition: Any, what: str, timeout: float = 10) -> None:
    """Wait for ``condition()`` (the queue works in the background)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def test_stripe_unreachable_event_stays_queued_and_is_retried(
    service: Service, standin: StripeStandIn, fake_hub: FakeHub
) -> None:
    session_id = await checkout(service, "alice")
    completed = standin.sim.complete_checkout(session_id)[-1]
    standin.down = True
    response = await service.send(completed)
    # Recorded before the answer, so Stripe need not deliver it again; the re-fetch failed.
    assert response.json() == {"status": "queued"}
    await until(lambda: events(service)[completed["id"]].error, "the failed re-fetch recorded")
    assert events(service)[completed["id"]].outcome == "queued"
    assert "Stripe retrieve checkout session failed" in str(events(service)[completed["id"]].error)
    assert entitlements(service) == []
    standin.down = False
    await until(lambda: events(service)[completed["id"]].outcome == "applied", "the retry")
    await service.processed()
    assert events(service)[completed["id"]].error is None
    assert fake_hub.group_members[GROUP] == {"alice"}
    # Stripe's own redelivery changes nothing.
    assert (await service.send(completed)).json() == {"status": "duplicate"}


async def test_event_failing_beyond_stripes_retry_window_is_given_up(
    service: Service, standin: StripeStandIn
) -> None:
    session_id = await checkout(service, "alice")
    completed = standin.sim.complete_checkout(session_id)[-1]
    completed["created"] = int(time.time()) - 4 * 24 * 3600
    standin.down = True
    assert (await service.send(completed)).json() == {"status": "queued"}
    await until(lambda: events(service)[completed["id"]].outcome == "error", "giving up")
    assert "failed" in str(events(service)[completed["id"]].error)
    # A later delivery (or `learnhub reconcile`) may still process it.
    standin.down = False
    assert (await service.send(completed)).json() == {"status": "queued"}
    await until(lambda: events(service)[completed["id"]].outcome == "applied", "the replay")


async def test_event_not_recorded_is_not_acknowledged(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> list[str]:
        raise sa.exc.OperationalError("INSERT", {}, Exception("disk I/O error"))

    monkeypatch.setattr(repo, "accept_events", broken)
    response = await service.send(_event())
    assert response.status_code == 500
    assert "deliver it again" in response.json()["error"]
    monkeypatch.undo()
    response = await service.send(_event("balance.available"))
    assert response.json() == {"status": "ignored"}


async def test_acknowledged_events_survive_a_restart(
    service: Service,
    standin: StripeStandIn,
    fake_hub: FakeHub,
    settings: Settings,
    catalog: Catalog,
) -> None:
    sessions = [await checkout(service, user) for user in ("alice", "bob")]
    standin.down = True  # nothing can be processed before the "crash"
    for session_id in sessions:
        for event in standin.sim.complete_checkout(session_id):
            assert (await service.send(event)).status_code == 200
    await until(lambda: service.events.waiting_for_retry == 2, "both purchases to fail once")
    await service.events.aclose()  # the service stops; the queue lives on in the database
    assert {e.outcome for e in events(service).values()} == {"queued", "ignored"}
    standin.down = False
    db = service.billing.db
    ctx = build_context(
        settings,
        catalog,
        db,
        standin.client(),
        make_access_sync(db, catalog, settings, fake_hub),
        prefix=PREFIX,
    )
    restarted: EventQueue = ctx.events
    try:
        await restarted.start()
        await asyncio.wait_for(restarted.join(), 10)
    finally:
        await restarted.aclose()
        await ctx.billing.aclose()
    assert {e.outcome for e in events(service).values()} == {"applied", "ignored"}
    assert fake_hub.group_members[GROUP] == {"alice", "bob"}


async def test_burst_is_batched_one_refetch_per_purchase(
    service: Service, standin: StripeStandIn, fake_hub: FakeHub
) -> None:
    users = [f"learner-{i}" for i in range(40)]
    fake_hub.users.update(users)
    deliveries = []
    for user in users:
        deliveries += standin.sim.complete_checkout(await checkout(service, user))
    standin.requests.clear()
    standin.latency = 0.25  # Stripe's round trip over the internet
    record_reads: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "checkout_sessions" in statement:
            record_reads.append(statement)

    sa.event.listen(service.billing.db.engine, "before_cursor_execute", count)
    try:
        responses = await asyncio.gather(*(service.send(event) for event in deliveries))
        assert sorted({r.json()["status"] for r in responses}) == ["ignored", "queued"]
        await service.processed()
    finally:
        sa.event.remove(service.billing.db.engine, "before_cursor_execute", count)
    assert fake_hub.group_members[GROUP] == set(users)
    # One re-fetch per checkout.session.completed; charge.succeeded needs none.
    assert len(standin.requests) == len(users)
    assert all(path.startswith("/v1/checkout/sessions/") for _, path in standin.requests)
    # Far fewer Hub calls than purchases: the batches share their access syncs.
    assert 1 <= len(fake_hub.adds(GROUP)) <= len(users) // 4
    # LearnHub's records of the sessions are read once per batch, not once per event.
    assert 1 <= len(record_reads) <= len(users) // 4
    assert {e.outcome for e in events(service).values()} == {"applied", "ignored"}


async def test_deleted_user_is_skipped_others_unaffected(
    service: Service, standin: StripeStandIn, fake_hub: FakeHub
) -> None:
    await buy(service, standin, "carol")
    fake_hub.users.discard("carol")
    fake_hub.group_members[GROUP] = set()
    await buy(service, standin, "alice")
    assert fake_hub.group_members[GROUP] == {"alice"}
    assert {e.username for e in entitlements(service)} == {"alice", "carol"}


async def test_hostile_username(
    service: Service, standin: StripeStandIn, fake_hub: FakeHub
) -> None:
    await buy(service, standin, "d@ve.o'neil")
    assert fake_hub.group_members[GROUP] == {"d@ve.o'neil"}


async def test_concurrent_deliveries_are_processed_once(
    service: Service, standin: StripeStandIn, fake_hub: FakeHub
) -> None:
    sub_id, evs = await subscribe(service, standin, "bob")
    responses = await asyncio.gather(*(service.send(e) for e in evs * 4))
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    statuses = [r.json()["status"] for r in responses]
    assert statuses.count("duplicate") == len(evs) * 3
    await service.processed()
    assert len(events(service)) == len(evs)
    assert {e.outcome for e in events(service).values()} <= {"applied", "noop"}
    [ent] = entitlements(service)
    assert (ent.stripe_subscription_id, ent.status) == (sub_id, "active")
    assert fake_hub.group_members["course-python-101"] == {"bob"}
