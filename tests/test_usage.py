"""Container-hours from sampled Hub server models."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hub.store import Database, upgrade
from hub.usage import container_hours, record, running_servers

T0 = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


@pytest.fixture
def db(tmp_path: Path) -> Database:
    url = f"sqlite:///{tmp_path / 'learnhub.sqlite'}"
    upgrade(url)
    return Database(url)


def model(name: str, started: datetime, *, ready: bool = True, server: str = "py") -> dict:  # type: ignore[type-arg]
    return {
        "name": name,
        "servers": {
            server: {"ready": ready, "started": started.isoformat().replace("+00:00", "Z")}
        },
    }


def test_running_course_servers_only() -> None:
    users = [
        model("ada", T0),
        model("bob", T0, ready=False),
        model("cy", T0, server="not-a-course"),
        {"name": "dee", "servers": {}},
    ]
    found = running_servers(users, {"py"})
    assert [(s.username, s.course_id, s.started_at) for s in found] == [("ada", "py", T0)]


def test_samples_extend_a_run_and_a_restart_is_a_new_run(db: Database) -> None:
    first = running_servers([model("ada", T0)], {"py"})
    record(db, first, T0 + timedelta(minutes=1))
    record(db, first, T0 + timedelta(minutes=30))
    # A sample that arrives late never moves the end backwards.
    record(db, first, T0 + timedelta(minutes=10))
    restarted = running_servers([model("ada", T0 + timedelta(hours=2))], {"py"})
    record(db, restarted, T0 + timedelta(hours=3))
    assert container_hours(db) == pytest.approx({"py": 0.5 + 1.0})
