"""The instructor dashboard reads one course's rows, and exactly those.

It read every entitlement and payment of the platform to show one course (0.36 s p50 at 1,000
members, growing with them: benchmarks/scale.py). The course's own reads must still find every
row that concerns the course, plan entitlements included, and nothing of another course.
"""

from __future__ import annotations

from pathlib import Path

from hub.store import Database, upgrade
from hub.store import repository as repo


def test_course_reads_find_the_course_and_its_plans_only(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'learnhub.sqlite'}"
    upgrade(url)
    db = Database(url)
    try:
        with db.transaction() as s:
            for user, course in [("ann", "algo"), ("bob", "algo"), ("cid", "python")]:
                repo.set_manual_access(s, user, course, active=True, reason="test")
            repo.apply_update(
                s,
                repo.EntitlementUpdate(
                    username="dan",
                    source="subscription",
                    status="active",
                    plan_id="all-access",
                    stripe_subscription_id="sub_1",
                ),
            )
            repo.apply_update(
                s,
                repo.EntitlementUpdate(
                    username="eve",
                    source="subscription",
                    status="active",
                    plan_id="python-only",
                    stripe_subscription_id="sub_2",
                ),
            )
            repo.record_payments(
                s,
                [
                    repo.PaymentRecord("cs_1", "checkout", "ann", "usd", 4900, course_id="algo"),
                    repo.PaymentRecord("cs_2", "checkout", "cid", "usd", 6900, course_id="python"),
                ],
            )
        with db.transaction() as s:
            ents = repo.course_entitlements(s, "algo", ["all-access"])
            payments = repo.course_payments(s, "algo")
            without_plans = repo.course_entitlements(s, "algo", [])
        assert sorted(e.username for e in ents) == ["ann", "bob", "dan"]
        assert [p.stripe_id for p in payments] == ["cs_1"]
        assert sorted(e.username for e in without_plans) == ["ann", "bob"]
    finally:
        db.dispose()
