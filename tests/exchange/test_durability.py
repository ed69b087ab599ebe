"""Acknowledged data survives a power cut: fsync before 201, SQLite FULL, no orphaned staging.

A power cut cannot be staged in a test, so these check the parts that make one harmless, on the
real storage and the real database: the stored files and the folders that name them are
fsynced before the exchange answers 201, every connection of LearnHub's SQLite database runs
with ``synchronous=FULL``, and what a crash mid-upload left in staging is gone once the
storage starts again.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import sqlalchemy as sa

from grader.exchange.storage import ExchangeStorage
from hub.store import Database
from tests.exchange.conftest import COURSE, LIMITS, Exchange, targz

NB = b'{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'


def fsync_recorder(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Replace ``os.fsync`` with one that records the path of every synced descriptor."""
    synced: list[str] = []
    real = os.fsync

    def recording(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", recording)
    return synced


async def test_submission_is_fsynced_before_201(
    exchange: Exchange, monkeypatch: pytest.MonkeyPatch
) -> None:
    response = await exchange.call(
        "PUT", "assignments/ps1", "tok-inst", content=targz({"a.ipynb": NB})
    )
    assert response.status_code == 201
    synced = fsync_recorder(monkeypatch)
    response = await exchange.call(
        "POST",
        "assignments/ps1/submissions",
        "tok-alice",
        content=targz({"ps1.ipynb": NB, "data/x.csv": b"1,2"}),
    )
    assert response.status_code == 201, response.text
    root = exchange.storage.root
    stored = root / COURSE / "submissions" / response.json()["id"]
    staged = [Path(p) for p in synced if "/.staging/" in p]
    # Every file and folder of the upload, while still in staging...
    assert {p.name for p in staged} >= {"ps1.ipynb", "x.csv", "data"}, synced
    # ...then the folder the rename wrote into (which makes the rename durable).
    assert str(stored.parent) in synced, synced
    assert synced.index(str(stored.parent)) > max(synced.index(str(p)) for p in staged)
    assert (stored / "ps1.ipynb").read_bytes() == NB


async def test_feedback_and_release_are_fsynced(
    exchange: Exchange, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced = fsync_recorder(monkeypatch)
    response = await exchange.call(
        "PUT", "assignments/ps1", "tok-inst", content=targz({"a.ipynb": NB})
    )
    assert response.status_code == 201
    assert str(exchange.storage.root / COURSE / "released") in synced, synced


def test_learnhub_sqlite_is_synchronous_full(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path}/learnhub.sqlite")
    try:
        with database.engine.connect() as connection:
            # 2 = FULL: a commit returns only after the WAL is on disk.
            assert connection.execute(sa.text("PRAGMA synchronous")).scalar() == 2
            assert connection.execute(sa.text("PRAGMA journal_mode")).scalar() == "wal"
    finally:
        database.dispose()


def test_orphaned_staging_is_removed_at_start(db: Database, tmp_path: Path) -> None:
    root = tmp_path / "exchange"
    live = ExchangeStorage(root, db, courses={COURSE}, limits=LIMITS)
    in_flight = live.staging_area / "upload-in-progress"
    in_flight.mkdir()
    # What a crash mid-upload leaves: a half-unpacked folder of a process that is gone, in the
    # old flat layout and in the per-process one (its lock file no longer held).
    crashed = root / ".staging" / "0123456789abcdef0123456789abcdef"
    (crashed / "deep" / "er").mkdir(parents=True)
    (crashed / "deep" / "er" / "half.ipynb").write_bytes(b"{")
    dead = root / ".staging" / "dead-process"
    (dead / "upload").mkdir(parents=True)
    (root / ".staging" / "dead-process.lock").touch()

    restarted = ExchangeStorage(root, db, courses={COURSE}, limits=LIMITS)

    assert not crashed.exists() and not dead.exists()
    assert not (root / ".staging" / "dead-process.lock").exists()
    # Another running process's upload is left alone.
    assert in_flight.is_dir()
    assert restarted.staging_area.is_dir() and restarted.staging_area != live.staging_area
