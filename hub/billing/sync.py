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
        rows = repo.access_rows(session)
        desired = desired_membership(
            rows,
            catalog,
            settings.payments.plans,
            now=now or utcnow(),
            grace=timedelta(days=settings.payments.grace_period_days),
        )
    desired.update(instructor_membership(catalog))
    return desired


class CoalescingSync:
    """Run an idempotent sync so that concurrent callers share runs.

    When ``await sync()`` returns, a run that *started after the call* has finished, so the
    caller's committed change is applied. Callers that arrive while a run is in progress share one
    follow-up run instead of queueing one each: a burst of N webhooks costs about two syncs, not
    N, and two syncs never interleave their reads and writes of a group.
    """

    def __init__(self, run: Callable[[], Awaitable[None]]) -> None:
        self._run = run
        self._current: asyncio.Future[None] | None = None
        self._follow_up: asyncio.Future[None] | None = None

    async def __call__(self) -> None:
        if self._current is None or self._current.done():
            self._current = asyncio.ensure_future(self._run())
            await asyncio.shield(self._current)
            return
        if self._follow_up is None:
            self._follow_up = asyncio.ensure_future(self._after(self._current))
        await asyncio.shield(self._follow_up)

    async def _after(self, current: asyncio.Future[None]) -> None:
        try:
            await current
        except Exception:  # noqa: S110 - its own callers got that error; we run afresh
            pass
        # From here on, newcomers need yet another run: this one may have read before them.
        self._follow_up = None
        self._current = asyncio.ensure_future(self._run())
        await self._current


def make_access_sync(
    db: Database, catalog: Catalog, settings: Settings, hub: HubClient
) -> Callable[[], Awaitable[None]]:
    """A ``sync_access`` callable for :class:`hub.billing.fulfilment.Billing` and the service.

    Concurrent calls are coalesced (:class:`CoalescingSync`). Raises
    :class:`hub.errors.HubAPIError` when the Hub cannot be reached.
    """
    last: list[MembershipChanges] = []

    async def run() -> None:
        desired = await asyncio.to_thread(load_desired_membership, db, catalog, settings)
        last[:] = [await apply_membership(hub, desired)]

    return CoalescingSync(run)
