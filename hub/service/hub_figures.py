"""The operator dashboard's figures that come from the Hub, shared by every view.

Both read pages of ``GET /hub/api/users``, which JupyterHub builds user by user on its single
event loop (0.2-0.4 s a page of 200 at 10,000 members, benchmarks/scale.py):

- **activity** (A, members active in the last 7 days): every recently active user, one page
  per 200 of them. It changes on the scale of hours, so one reading is reused for
  :data:`ACTIVITY_CACHE_SECONDS`;
- **container-hours** (H): a usage sample lists every running server (5 pages at 1,000) and
  extends their runs. The service samples every :data:`hub.usage.SAMPLE_SECONDS` anyway; a
  view samples again only when the last sample is older than that, or when the Hub counts a
  different number of users with a running server than that sample saw (one request for one
  user): a server that started or stopped since is counted now, as the page promises.

Concurrent views share one reading (a lock each), so a page reloaded in a loop costs the Hub
one small request a view, not a full listing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hub.access.hub_groups import PAGINATION_MEDIA_TYPE, HubClient
from hub.store import Database
from hub.usage import SAMPLE_SECONDS, record, running_servers

log = logging.getLogger("learnhub.service")

#: How long one reading of the recently active users is reused.
ACTIVITY_CACHE_SECONDS = 300.0


@dataclass(frozen=True)
class UsageSample:
    """When the last usage sample was taken and how many users had a running server."""

    at: float
    active_users: int


class HubFigures:
    """Activity and usage readings of the Hub, kept between views (one per service)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._activity: tuple[float, datetime, list[dict[str, Any]]] | None = None
        self._activity_lock = asyncio.Lock()
        self._usage: UsageSample | None = None
        self._usage_lock = asyncio.Lock()

    async def recently_active(self, hub: HubClient, since: datetime) -> list[dict[str, Any]]:
        """Users active since ``since`` (maybe a few more), as read at most
        :data:`ACTIVITY_CACHE_SECONDS` ago; raises :class:`~hub.errors.HubAPIError`."""
        async with self._activity_lock:
            cached = self._activity
            # A reading for a later cut-off would miss users: only an earlier one is reused.
            if cached is not None and self._clock() - cached[0] < ACTIVITY_CACHE_SECONDS:
                if cached[1] <= since:
                    return cached[2]
            users = await hub.users_active_since(since)
            self._activity = (self._clock(), since, users)
            return users

    async def sample_usage(self, hub: HubClient, db: Database, course_ids: set[str]) -> int:
        """Take a usage sample now (what :func:`hub.usage.sample` does); the service's minutely
        sampler calls this, so views know how fresh the last one is. Returns how many running
        course servers were seen."""
        async with self._usage_lock:
            return await self._sample(hub, db, course_ids)

    async def _sample(self, hub: HubClient, db: Database, course_ids: set[str]) -> int:
        # hub.usage.sample, keeping how many users the listing held.
        users = await hub.list_users(state="active")
        servers = running_servers(users, course_ids)
        await asyncio.to_thread(record, db, servers, datetime.now(UTC))
        self._usage = UsageSample(self._clock(), len(users))
        return len(servers)

    async def usage_current(self, hub: HubClient, db: Database, course_ids: set[str]) -> None:
        """Make the recorded container-hours include the servers running now: sample again
        unless the last sample is recent and the Hub still counts as many users with a running
        server; raises :class:`~hub.errors.HubAPIError`."""
        async with self._usage_lock:
            last = self._usage
            if last is not None and self._clock() - last.at < SAMPLE_SECONDS:
                if await active_user_count(hub) == last.active_users:
                    return
            await self._sample(hub, db, course_ids)


async def active_user_count(hub: HubClient) -> int:
    """How many users have a running (or starting) server: one page of one user, whose
    pagination carries the total."""
    response = await hub.request(
        "GET", "/users?state=active&limit=1", headers={"Accept": PAGINATION_MEDIA_TYPE}
    )
    return int(response.json()["_pagination"]["total"])
