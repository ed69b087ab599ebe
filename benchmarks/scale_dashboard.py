"""The operator dashboard's database work and its quality figure, per view, as the data grows.

    .venv/bin/python benchmarks/scale_dashboard.py [--members 1000 10000 100000] [--gradebooks 200]
    .venv/bin/python benchmarks/scale_dashboard.py --folder /tmp/lh-scale-XXXX   # a kept scale run

Times, alternately and ``--repeat`` times each, and prints p50 / max in ms with the statements
each ran:

- **every row** (what the dashboard's figures are defined as, and what it computed before
  0020): every entitlement, payment and server run as ORM objects, folded by
  :func:`hub.service.dashboard_data.operator_data_from_rows`;
- **per view**: :func:`hub.service.dashboard_data.read_operator_data` (counts in SQL, the
  enrolment chart from its weekly rows).

Both must give the same figures (checked). With ``--members`` the data is
:func:`benchmarks.common.dashboard_rows` (the test's: every kind of entitlement, payments, server
runs over 200 days) in a fresh migrated SQLite database per size, written through the ORM so the
weekly rows are kept as LearnHub keeps them. With ``--folder`` it is the LearnHub database of a
folder kept by ``benchmarks/scale.py --keep``, read as the service account.

``--gradebooks N`` makes N courses with a small nbgrader gradebook each (one assignment, five
graded submissions) and times the quality figure: opening every gradebook
(:func:`grader.reports.average_score`, what every view did) against
:class:`hub.service.grade_figures.GradebookScores` on a first view, on a repeated view, and after
one gradebook changed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import course_entry, dashboard_rows, loadavg, machine  # noqa: E402
from hub.courses import Catalog, CourseEntry  # noqa: E402
from hub.privilege import run_as_service_user, service_account  # noqa: E402
from hub.service.dashboard_data import (  # noqa: E402
    OperatorData,
    operator_data_from_rows,
    read_operator_data,
)
from hub.settings import PlanSettings, Settings, settings_from_environment  # noqa: E402
from hub.store import Database, Entitlement, Payment, upgrade  # noqa: E402
from hub.usage import container_hours  # noqa: E402

GRACE = timedelta(days=3)
ALL_ACCESS = {"id": "all-access", "title": "All", "interval": "month", "amount": 2900}
DATA_ONLY = {"id": "data-only", "title": "Data", "interval": "year", "amount": 9900}
PLANS = [
    PlanSettings.model_validate(ALL_ACCESS),
    PlanSettings.model_validate({**DATA_ONLY, "courses": ["course-001"]}),
]


def every_row(
    db: Database, catalog: Catalog, plans: Any, now: datetime, shown: list[str], active: Any
) -> OperatorData:
    with db.transaction() as session:
        ents = list(session.scalars(sa.select(Entitlement)))
        payments = list(session.scalars(sa.select(Payment)))
    return operator_data_from_rows(
        ents, payments, container_hours(db), catalog, plans,
        now=now, grace=GRACE, course_ids=shown, active_users=active,
    )  # fmt: skip


def same(a: OperatorData, b: OperatorData) -> bool:
    # SQLite's date functions count in milliseconds: a run's hours may differ by < 1 ms.
    return (
        (a.members, a.per_course, a.active_members, a.enrolment, a.revenue)
        == (b.members, b.per_course, b.active_members, b.enrolment, b.revenue)
    ) and all(abs(a.hours[c] - b.hours.get(c, -1)) < 0.01 for c in a.hours)


def compare(db: Database, catalog: Catalog, plans: Any, repeat: int) -> dict[str, Any]:
    """Time both ways on ``db``; statements, figures and row counts."""
    statements = [0]
    sa.event.listen(
        db.engine, "before_cursor_execute", lambda *_a: statements.__setitem__(0, statements[0] + 1)
    )
    now = datetime.now(UTC)
    shown = catalog.ids()[:20]
    with db.transaction() as session:
        names = list(session.scalars(sa.select(Entitlement.username).distinct()))
    active = names[::10]  # a tenth of the members active this week
    runs: dict[str, Callable[[], OperatorData]] = {
        "every row": lambda: every_row(db, catalog, plans, now, shown, active),
        "per view": lambda: read_operator_data(
            db, catalog, plans, now=now, grace=GRACE, course_ids=shown, active_users=active
        ),
    }
    runs["per view"]()  # the first view after the load computes the weekly rows for its catalog
    times: dict[str, list[float]] = {k: [] for k in runs}
    counts: dict[str, int] = {}
    results: dict[str, OperatorData] = {}
    for _ in range(repeat):
        for label, call in runs.items():
            statements[0] = 0
            t0 = time.perf_counter()
            results[label] = call()
            times[label].append((time.perf_counter() - t0) * 1000)
            counts[label] = statements[0]
    with db.transaction() as session:
        rows = {
            "entitlements": session.scalar(sa.select(sa.func.count(Entitlement.id))),
            "payments": session.scalar(sa.select(sa.func.count(Payment.id))),
        }
    return {
        "times_ms": times,
        "statements": counts,
        "same_figures": same(results["every row"], results["per view"]),
        "rows": rows,
        "weeks": len(results["per view"].enrolment),
        "loadavg": loadavg(),
    }


def synthetic(sizes: list[int], repeat: int) -> list[dict[str, Any]]:
    catalog = Catalog([course_entry(f"course-{i:03d}") for i in range(200)])
    ids = catalog.ids()
    out = []
    for size in sizes:
        with tempfile.TemporaryDirectory(prefix="lh-dash-") as folder:
            url = f"sqlite:///{folder}/learnhub.sqlite"
            upgrade(url)
            db = Database(url)
            now = datetime.now(UTC)
            for first in range(0, size, 5000):
                ents, payments, runs = dashboard_rows(first, min(5000, size - first), ids, now)
                with db.transaction() as session:
                    session.add_all([*ents, *payments, *runs])
            result = compare(db, catalog, PLANS, repeat)
            db.dispose()
        result["members"] = size
        out.append(result)
        print_result(f"{size} members (generated)", result)
    return out


def from_folder(folder: Path, repeat: int) -> dict[str, Any]:
    state = json.loads((folder / "scale-state.json").read_text())
    env = {
        "LEARNHUB_STRIPE_WEBHOOK_SECRETS": state["secret"],
        "LEARNHUB_STRIPE_SECRET_KEY": state["api_key"],
    }
    settings = settings_from_environment(env, folder / "learnhub.yaml")
    out = folder / "dashboard-compare.json"

    def work() -> None:
        db = Database(settings.learnhub_db_url)
        result = compare(db, Catalog.load(settings.courses_dir), settings.payments.plans, repeat)
        db.dispose()
        out.write_text(json.dumps(result))

    account = service_account(settings)
    # The child writes as the service account: the file is made here and given to it.
    out.touch(mode=0o600)
    if account is not None:
        os.chown(out, account.uid, account.gid)
    run_as_service_user(account, work)
    result: dict[str, Any] = json.loads(out.read_text())
    print_result(f"kept scale folder {folder}", result)
    return result


def gradebooks(count: int, repeat: int) -> dict[str, Any]:
    from nbgrader.api import Gradebook

    from grader.gradebook import ensure_gradebook
    from grader.reports import average_score
    from hub.service.grade_figures import GradebookScores

    with tempfile.TemporaryDirectory(prefix="lh-gradebooks-") as folder:
        settings = Settings.model_validate(
            {"database": {"gradebook_url": f"sqlite:///{folder}/{{course}}.db"}}
        )
        entries = [course_entry(f"course-{i:03d}", assignments=1) for i in range(count)]

        def grade(entry: CourseEntry, students: range) -> None:
            url = settings.gradebook_url(entry.course.id)
            ensure_gradebook(url)
            with Gradebook(url, entry.course.id) as gb:
                if not gb.assignments:
                    gb.add_assignment("a1")
                    gb.add_notebook("a1", "a1")
                    gb.add_grade_cell("t", "a1", "a1", max_score=10, cell_type="code")
                for s in students:
                    gb.update_or_create_student(f"s{s}")
                    gb.add_submission("a1", f"s{s}")
                    gb.find_grade("t", "a1", "a1", f"s{s}").manual_score = s % 11
                gb.db.commit()

        t0 = time.perf_counter()
        for entry in entries:
            grade(entry, range(5))
        made_s = time.perf_counter() - t0
        scores = GradebookScores()

        def timed(call: Callable[[], Any]) -> tuple[float, Any]:
            t = time.perf_counter()
            value = call()
            return (time.perf_counter() - t) * 1000, value

        every = [timed(lambda: average_score(settings, entries)) for _ in range(repeat)]
        first_ms, first = timed(lambda: scores.average(settings, entries))
        again = [timed(lambda: scores.average(settings, entries)) for _ in range(repeat)]
        opened_before = scores.opened
        grade(entries[0], range(5, 6))
        changed_ms, changed = timed(lambda: scores.average(settings, entries))
        assert first == every[0][1] and changed == average_score(settings, entries)
        result = {
            "gradebooks": count,
            "made_s": made_s,
            "every gradebook (each view before)": [t for t, _ in every],
            "kept scores, first view": [first_ms],
            "kept scores, nothing changed": [t for t, _ in again],
            "kept scores, one gradebook changed": [changed_ms],
            "opened": {"first view": opened_before, "after one change": scores.opened},
            "loadavg": loadavg(),
        }
    print(f"\n{count} gradebooks (made in {made_s:.0f} s), load {result['loadavg']}")
    print("| quality figure (Q) | p50 / max |\n|---|---|")
    for label in list(result)[2:6]:
        values = result[label]
        p50, top = statistics.median(values), max(values)
        print(f"| {label} (n={len(values)}) | {p50:.0f} / {top:.0f} ms |")
    print(f"gradebooks opened: {result['opened']}")
    return result


def print_result(title: str, result: dict[str, Any]) -> None:
    print(f"\n{title}: rows {result['rows']}, {result['weeks']} weeks, load {result['loadavg']}")
    print(f"same figures both ways: {result['same_figures']}")
    print("| operator dashboard, database side | p50 / max | statements |\n|---|---|---|")
    for label, values in result["times_ms"].items():
        print(
            f"| {label} (n={len(values)}) | {statistics.median(values):.0f} / "
            f"{max(values):.0f} ms | {result['statements'][label]} |"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, nargs="*", default=[1000, 10_000, 100_000])
    parser.add_argument("--gradebooks", type=int, default=200)
    parser.add_argument("--folder", type=Path, help="a folder kept by benchmarks/scale.py")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    result: dict[str, Any] = {"machine": machine()}
    ok = True
    if args.folder:
        result["folder"] = from_folder(args.folder, args.repeat)
        ok = result["folder"]["same_figures"]
    else:
        result["generated"] = synthetic(args.members, args.repeat)
        ok = all(r["same_figures"] for r in result["generated"])
        if args.gradebooks:
            result["gradebooks"] = gradebooks(args.gradebooks, args.repeat)
    out = args.out or ROOT / "benchmarks" / "results" / "scale-dashboard.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"\nmachine: {result['machine']}\nwrote {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
