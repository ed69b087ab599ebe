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
from sqlalchemy.orm import Session

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


#: Usernames per query when a sample looks up the runs it extends (well under SQLite's limit of
#: bound parameters).
LOOKUP_CHUNK = 500


def record(db: Database, servers: list[RunningServer], now: datetime) -> None:
    """Extend (or start) the run of every running server (blocking).

    The runs are looked up a few hundred users per query and extended in one executemany: one
    query per server took most of a sample at 1,000 running servers (benchmarks/scale.py).
    """
    with db.transaction() as session:
        known: dict[tuple[str, str, datetime], ServerUsage] = {}
        names = sorted({server.username for server in servers})
        for start in range(0, len(names), LOOKUP_CHUNK):
            for row in session.scalars(
                sa.select(ServerUsage).where(
                    ServerUsage.username.in_(names[start : start + LOOKUP_CHUNK])
                )
            ):
                known[(row.username, row.course_id, row.started_at)] = row
        for server in servers:
            key = (server.username, server.course_id, server.started_at)
            found = known.get(key)
            if found is not None:
                found.last_seen_at = max(found.last_seen_at, now)
                continue
            known[key] = ServerUsage(
                username=server.username,
                course_id=server.course_id,
                started_at=server.started_at,
                last_seen_at=now,
            )
            session.add(known[key])


def _run_seconds(dialect: str) -> sa.ColumnElement[Any]:
    """Seconds from a run's start to when it was last seen, in the database's own arithmetic
    (both columns are naive UTC)."""
    if dialect == "sqlite":
        return (
            sa.func.julianday(ServerUsage.last_seen_at) - sa.func.julianday(ServerUsage.started_at)
        ) * 86400.0
    return sa.extract("epoch", ServerUsage.last_seen_at - ServerUsage.started_at)


def container_hours_query(session: Session) -> dict[str, float]:
    """Container-hours per course, summed by the database: one row per course, however many
    runs were recorded (there is one per server start, for as long as LearnHub runs)."""
    seconds = _run_seconds(session.get_bind().dialect.name)
    total = sa.func.sum(
        sa.case((ServerUsage.last_seen_at > ServerUsage.started_at, seconds), else_=0)
    )
    rows = session.execute(sa.select(ServerUsage.course_id, total).group_by(ServerUsage.course_id))
    return {course_id: float(value or 0) / 3600 for course_id, value in rows}


def container_hours(db: Database) -> dict[str, float]:
    """Container-hours per course (blocking)."""
    with db.transaction() as session:
        return container_hours_query(session)


async def sample(hub: HubClient, db: Database, course_ids: set[str]) -> int:
    """Take one sample; returns how many running course servers were seen."""
    # Every page: past the Hub's page size (200) one request undercounted container-hours.
    users = await hub.list_users(state="active")
    servers = running_servers(users, course_ids)
    await asyncio.to_thread(record, db, servers, datetime.now(UTC))
    return len(servers)
