"""Purchases only add their buyers to groups; anything that may take access away syncs whole.

The access sync after a batch of webhook events used to read every group from the Hub and
every entitlement, work that grows with the members (the Hub's busiest work during a burst of
purchases, benchmarks/edge.py). A batch whose changes can only add access (one-off course
purchases that give access now) now adds its buyers to their groups without reading any group;
a batch with a refund, a dispute or a plan still runs the whole sync, so revoked learners are
removed. Genuinely signed events through the real service, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from harness.stripe_standin import StripeStandIn
from hub.access.hub_groups import make_access_sync
from hub.courses import Catalog
from hub.settings import Settings
from hub.store import Database
from hub.store import repository as repo
from hub.store.repository import EntitlementUpdate
from tests.billing.conftest import FakeHub, Service
from tests.billing.test_webhook import GROUP, buy, checkout


class CountingHub(FakeHub):
    """The fake Hub, counting how often every group's members were read."""

    def __init__(self, users: set[str]) -> None:
        super().__init__(users)
        self.group_reads = 0
        #: When set, a read of the groups waits for it (to hold a whole sync mid-way).
        self.hold_reads: asyncio.Event | None = None

    async def groups(self) -> dict[str, set[str]]:
        self.group_reads += 1
        if self.hold_reads is not None:
            await self.hold_reads.wait()
        return await super().groups()


@pytest.fixture
def fake_hub() -> CountingHub:
    return CountingHub({"alice", "bob", "carol", "d@ve.o'neil"})


async def deliver_together(service: Service, events: list[dict[str, Any]]) -> None:
    """All events at once (one batch as far as timing allows); wait until processed."""
    answers = await asyncio.gather(*(service.send(event) for event in events))
    assert [a.status_code for a in answers] == [200] * len(events)
    await service.processed()


async def test_a_burst_of_purchases_adds_the_buyers_without_reading_every_group(
    service: Service, standin: StripeStandIn, fake_hub: CountingHub
) -> None:
    buyers = ["alice", "bob", "carol", "d@ve.o'neil"]
    events = []
    for user in buyers:
        events += standin.sim.complete_checkout(await checkout(service, user))
    await deliver_together(service, events)
    assert fake_hub.group_members[GROUP] == set(buyers)
    assert fake_hub.group_reads == 0
    # One request per batch for the group, not one per buyer.
    assert len(fake_hub.adds(GROUP)) < len(buyers)


async def test_a_refund_among_purchases_still_removes_its_learner(
    service: Service, standin: StripeStandIn, fake_hub: CountingHub
) -> None:
    _, charge = await buy(service, standin, "alice")
    assert fake_hub.group_members[GROUP] == {"alice"}
    events = standin.sim.complete_checkout(await checkout(service, "bob"))
    await deliver_together(service, [*events, *standin.sim.refund(charge)])
    assert fake_hub.group_members[GROUP] == {"bob"}
    assert fake_hub.group_reads >= 1  # the whole sync ran for the refund
    assert ("stop", "alice", "python-101") in fake_hub.calls


async def test_an_addition_waits_for_a_whole_sync_that_read_the_entitlements_before_it(
    db: Database, catalog: Catalog, settings: Settings, fake_hub: CountingHub
) -> None:
    sync = make_access_sync(db, catalog, settings, fake_hub)
    fake_hub.hold_reads = asyncio.Event()
    whole = asyncio.ensure_future(sync())
    while fake_hub.group_reads == 0:  # it has read the entitlements: alice has none yet
        await asyncio.sleep(0.01)
    update = EntitlementUpdate(
        username="alice",
        source="purchase",
        status="active",
        course_id="python-101",
        stripe_checkout_session_id="cs_test_race",
    )
    with db.transaction() as session:
        repo.apply_update(session, update)
    added = asyncio.ensure_future(sync.add_granted(["alice"]))
    await asyncio.sleep(0.05)
    assert not added.done()  # it waits for the whole run
    fake_hub.hold_reads.set()
    await asyncio.gather(whole, added)
    # Had alice been added while the whole run held its old reading, it would have removed her.
    assert fake_hub.group_members[GROUP] == {"alice"}
