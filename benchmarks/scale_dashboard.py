"""The operator dashboard's database work before and after its fix, on one kept scale folder.

    .venv/bin/python benchmarks/scale_dashboard.py /tmp/lh-scale-XXXX [--repeat 5]

Reads the LearnHub database of a folder kept by ``benchmarks/scale.py --keep`` (10,000 members
after a full run) as the service account, and times, alternately and ``--repeat`` times each:

- **before**: what the dashboard did up to 8f4b9c2 — every entitlement and payment as ORM
  objects, membership folded over them, revenue summed in Python, the enrolment chart week by
  week over every entitlement, container-hours over every run;
- **after**: :func:`hub.service.dashboard_data.read_operator_data`.

It checks that both give the same figures, and prints p50 / max in ms with the statements each
ran. The Hub side is not timed here (the hub is stopped): before, a view listed every running
server and every recently active member (``benchmarks/scale.py`` measures the page through the
proxy); after, one page of one user.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import machine  # noqa: E402
from hub.courses import Catalog  # noqa: E402
from hub.entitlements import desired_membership  # noqa: E402
from hub.privilege import run_as_service_user, service_account  # noqa: E402
from hub.service.dashboard_data import OperatorData, read_operator_data  # noqa: E402
from hub.service.reports import revenue_from_payments, week_start  # noqa: E402
from hub.settings import settings_from_environment  # noqa: E402
from hub.store import Database, Entitlement, Payment  # noqa: E402
from hub.store.usage_models import ServerUsage  # noqa: E402


def enrolment_week_by_week(ents: list[Any], course_ids: set[str], now: datetime) -> list[Any]:
    """The chart as it was computed before (every entitlement for every week)."""
    relevant = [
        e
        for e in ents
        if e.status != "pending" and (e.course_id in course_ids or e.plan_id is not None)
    ]
    if not relevant:
        return []
    week, series = week_start(min(e.created_at for e in relevant)), []
    while week <= week_start(now):
        end = datetime.combine(week + timedelta(days=7), datetime.min.time(), tzinfo=UTC)
        users = {
            e.username
            for e in relevant
            if e.created_at < end and (e.status != "revoked" or e.updated_at >= end)
        }
        series.append((week.isoformat(), len(users)))
        week += timedelta(days=7)
    return series


def before(db: Database, catalog: Catalog, plans: Any, now: datetime) -> OperatorData:
    with db.transaction() as session:
        ents = list(session.scalars(sa.select(Entitlement).order_by(Entitlement.id)))
        payments = list(session.scalars(sa.select(Payment).order_by(Payment.id)))
        runs = list(session.scalars(sa.select(ServerUsage)))
    hours: dict[str, float] = {}
    for run in runs:
        seconds = max(0.0, (run.last_seen_at - run.started_at).total_seconds())
        hours[run.course_id] = hours.get(run.course_id, 0.0) + seconds / 3600
    return OperatorData(
        desired=desired_membership(ents, catalog, plans, now=now, grace=timedelta(days=3)),
        enrolment=enrolment_week_by_week(ents, set(catalog.ids()), now),
        revenue=revenue_from_payments(payments),
        hours=hours,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    state = json.loads((args.folder / "scale-state.json").read_text())
    env = {
        "LEARNHUB_STRIPE_WEBHOOK_SECRETS": state["secret"],
        "LEARNHUB_STRIPE_SECRET_KEY": state["api_key"],
    }
    settings = settings_from_environment(env, args.folder / "learnhub.yaml")
    out = args.folder / "dashboard-compare.json"

    def work() -> None:
        catalog = Catalog.load(settings.courses_dir)
        plans = settings.payments.plans
        db = Database(settings.learnhub_db_url)
        statements = [0]
        sa.event.listen(
            db.engine,
            "before_cursor_execute",
            lambda *_a: statements.__setitem__(0, statements[0] + 1),
        )
        now = datetime.now(UTC)
        grace = timedelta(days=settings.payments.grace_period_days)
        runs: dict[str, Callable[[], OperatorData]] = {
            "before": lambda: before(db, catalog, plans, now),
            "after": lambda: read_operator_data(db, catalog, plans, now=now, grace=grace),
        }
        times: dict[str, list[float]] = {k: [] for k in runs}
        counts: dict[str, int] = {}
        results: dict[str, OperatorData] = {}
        for _ in range(args.repeat):
            for label, call in runs.items():
                statements[0] = 0
                t0 = time.perf_counter()
                results[label] = call()
                times[label].append(time.perf_counter() - t0)
                counts[label] = statements[0]
        same = results["before"] == results["after"] or (
            results["before"].desired == results["after"].desired
            and results["before"].enrolment == results["after"].enrolment
            and results["before"].revenue == results["after"].revenue
            # SQLite's date functions count in milliseconds: a run's hours may differ by < 1 ms.
            and all(
                abs(results["before"].hours[c] - results["after"].hours.get(c, -1)) < 0.01
                for c in results["before"].hours
            )
        )
        with db.transaction() as session:
            rows = {
                "entitlements": session.scalar(sa.select(sa.func.count(Entitlement.id))),
                "payments": session.scalar(sa.select(sa.func.count(Payment.id))),
                "server runs": session.scalar(sa.select(sa.func.count(ServerUsage.id))),
            }
        db.dispose()
        out.write_text(
            json.dumps(
                {
                    "times_ms": {k: [t * 1000 for t in v] for k, v in times.items()},
                    "statements": counts,
                    "same_figures": same,
                    "rows": rows,
                    "weeks": len(results["after"].enrolment),
                    "machine": machine(),
                }
            )
        )

    account = service_account(settings)
    # The child writes as the service account: the file is made here and given to it.
    out.touch(mode=0o600)
    if account is not None:
        os.chown(out, account.uid, account.gid)
    run_as_service_user(account, work)
    result = json.loads(out.read_text())
    print(f"\nrows: {result['rows']}, {result['weeks']} weeks of enrolment")
    print(f"same figures before and after: {result['same_figures']}")
    print("| operator dashboard, database side | p50 / max | statements |")
    print("|---|---|---|")
    for label, values in result["times_ms"].items():
        print(
            f"| {label} (n={len(values)}) | {statistics.median(values):.0f} / "
            f"{max(values):.0f} ms | {result['statements'][label]} |"
        )
    print(f"\nmachine: {result['machine']}")
    return 0 if result["same_figures"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
