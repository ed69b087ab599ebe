"""The access sync: entitlements in the database -> desired membership -> the Hub's groups."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from hub.access import HubClient, MembershipChanges, apply_membership, instructor_membership
from hub.courses import Catalog
from hub.entitlements import desired_membership
from hub.settings import Settings
from hub.store import Database, utcnow
from hub.store import repository as repo


def load_desired_membership(
    db: Database, catalog: Catalog, settings: Settings, *, now: datetime | None = None
) -> dict[str, set[str]]:
    """Desired groups of every catalog course (blocking).

    Learner groups come from the stored entitlements; instructor groups from each `course.yaml`.
    """
    with db.transaction() as session:
        rows = repo.entitlements(session)
        desired = desired_membership(
            rows,
            catalog,
            settings.payments.plans,
            now=now or utcnow(),
            grace=timedelta(days=settings.payments.grace_period_days),
        )
    desired.update(instructor_membership(catalog))
    return desired


def make_access_sync(
    db: Database, catalog: Catalog, settings: Settings, hub: HubClient
) -> Callable[[], Awaitable[None]]:
    """A ``sync_access`` callable for :class:`hub.billing.fulfilment.Billing` and the service.

    Runs are serialized so two webhooks never interleave their reads and writes of a group.
    Raises :class:`hub.errors.HubAPIError` when the Hub cannot be reached.
    """
    lock = asyncio.Lock()
    last: list[MembershipChanges] = []

    async def sync_access() -> None:
        async with lock:
            desired = await asyncio.to_thread(load_desired_membership, db, catalog, settings)
            changes = await apply_membership(hub, desired)
            last[:] = [changes]

    return sync_access
