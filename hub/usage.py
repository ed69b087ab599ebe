"""Container-hours: how long course servers ran, sampled from the Hub API.

Every minute the LearnHub service lists running servers (`GET /users?state=active`, every page)
and extends each run's `last_seen_at` (a run is one server start, identified by the Hub's
`started` time). Container-hours are the sum of (last seen - started): exact to within one
sampling interval, and nothing is invented when the service was down (that time is simply not
counted).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from hub.access.hub_groups import HubClient
from hub.store import Database
from hub.store.usage_models import ServerUsage

#: Seconds between samples.
SAMPLE_SECONDS = 60


@dataclass(frozen=True)
class RunningServer:
    """A course server the Hub reports as running."""

    username: str
    course_id: str
    started_at: datetime


def _parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(UTC)


def running_servers(users: Iterable[dict[str, Any]], course_ids: set[str]) -> list[RunningServer]:
    """Course servers that are ready, from Hub user models."""
    found = []
    for user in users:
        for name, server in (user.get("servers") or {}).items():
            if name in course_ids and server.get("ready") and server.get("started"):
                found.append(RunningServer(user["name"], name, _parse(server["started"])))
    return found


def record(db: Database, servers: list[RunningServer], now: datetime) -> None:
    """Extend (or start) the run of every running server (blocking)."""
    with db.transaction() as session:
        for server in servers:
            row = session.scalars(
                sa.select(ServerUsage).where(
                    ServerUsage.username == server.username,
                    ServerUsage.course_id == server.course_id,
                    ServerUsage.started_at == server.started_at,
                )
            ).first()
            if row is None:
                session.add(
                    ServerUsage(
                        username=server.username,
                        course_id=server.course_id,
                        started_at=server.started_at,
                        last_seen_at=now,
                    )
                )
            else:
                row.last_seen_at = max(row.last_seen_at, now)


def container_hours(db: Database) -> dict[str, float]:
    """Container-hours per course (blocking)."""
    hours: dict[str, float] = {}
    with db.transaction() as session:
        for row in session.scalars(sa.select(ServerUsage)):
            seconds = max(0.0, (row.last_seen_at - row.started_at).total_seconds())
            hours[row.course_id] = hours.get(row.course_id, 0.0) + seconds / 3600
    return hours


async def sample(hub: HubClient, db: Database, course_ids: set[str]) -> int:
    """Take one sample; returns how many running course servers were seen."""
    # Every page: past the Hub's page size (200) one request undercounted container-hours.
    users = await hub.list_users(state="active")
    servers = running_servers(users, course_ids)
    await asyncio.to_thread(record, db, servers, datetime.now(UTC))
    return len(servers)
