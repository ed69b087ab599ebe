"""What durability costs: SQLite commit latency, NORMAL vs FULL, and exchange submit time.

Records ``stripe_events`` rows the way the webhook accepts an event (one commit each) through
LearnHub's real :class:`hub.store.Database` on a file under ``--dir`` (default: a temporary
folder on the data disk), with ``synchronous`` as it ships (FULL) and, for comparison, with the
connection switched back to NORMAL. Then stores small submissions through the real
:class:`grader.exchange.storage.ExchangeStorage` with and without ``os.fsync`` (patched out), so
the price of the fsyncs is seen alone.

    .venv/bin/python benchmarks/durability.py [--events 300] [--submissions 60] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import loadavg, percentile  # noqa: E402
from grader.exchange.storage import ExchangeStorage  # noqa: E402
from harness.archives import targz  # noqa: E402
from hub.store import Database, StripeEvent  # noqa: E402
from hub.store.database import upgrade  # noqa: E402

NB = json.dumps({"cells": [{"source": "x = 1\n" * 200}], "nbformat": 4}).encode()


def record_events(db: Database, n: int, synchronous: str) -> list[float]:
    """Seconds per accepted event (one committed insert each)."""

    @sa.event.listens_for(db.engine, "connect")
    def _sync(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute(f"PRAGMA synchronous={synchronous}")

    db.engine.dispose()  # new connections get the listener
    times = []
    for _ in range(n):
        started = time.perf_counter()
        with db.transaction() as session:
            session.add(
                StripeEvent(
                    event_id=f"evt_{uuid.uuid4().hex}",
                    type="checkout.session.completed",
                    created=datetime.now(UTC),
                    payload={"id": "x", "data": {"object": {"id": "cs_x"}}},
                    outcome="queued",
                )
            )
        times.append(time.perf_counter() - started)
    sa.event.remove(db.engine, "connect", _sync)
    return times


def submit_times(storage: ExchangeStorage, n: int, fsync: bool) -> list[float]:
    """Seconds per stored submission (3 files in 2 folders)."""
    real = os.fsync
    if not fsync:
        os.fsync = lambda fd: None  # type: ignore[assignment]
    try:
        archive = targz({"ps1.ipynb": NB, "data/a.csv": b"1,2\n" * 500, "notes.md": b"# hi\n"})
        times = []
        for i in range(n):
            started = time.perf_counter()
            storage.submit("bench", "ps1", f"learner{i}", archive)
            times.append(time.perf_counter() - started)
        return times
    finally:
        os.fsync = real  # type: ignore[assignment]


def summary(times: list[float]) -> dict[str, float]:
    """p50 / p99 in milliseconds and operations per second."""
    return {
        "p50_ms": round(statistics.median(times) * 1000, 2),
        "p99_ms": round(percentile(times, 0.99) * 1000, 2),
        "per_s": round(len(times) / sum(times), 1),
    }


def main() -> None:
    """Run the measurements and print JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--submissions", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    out: dict[str, Any] = {"load_start": loadavg()}
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        url = f"sqlite:///{tmp}/learnhub.sqlite"
        upgrade(url)
        db = Database(url)
        storage = ExchangeStorage(Path(tmp) / "exchange", db, courses={"bench"})
        storage.release("bench", "ps1", targz({"ps1.ipynb": NB}), by="bench")
        runs: dict[str, list[float]] = {"NORMAL": [], "FULL": [], "fsync": [], "no_fsync": []}
        # Alternate, so a change in the machine's load hits both sides alike.
        for _ in range(args.rounds):
            for mode in ("NORMAL", "FULL"):
                runs[mode] += record_events(db, args.events, mode)
            runs["no_fsync"] += submit_times(storage, args.submissions, fsync=False)
            runs["fsync"] += submit_times(storage, args.submissions, fsync=True)
        storage.close()
        db.dispose()
    out["webhook_event_commit"] = {m: summary(runs[m]) for m in ("NORMAL", "FULL")}
    out["exchange_submit"] = {m: summary(runs[m]) for m in ("no_fsync", "fsync")}
    out["load_end"] = loadavg()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
