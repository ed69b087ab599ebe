"""Entitlements -> desired membership (pure), and the store underneath."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from hub.access.hub_groups import make_access_sync
from hub.courses import Catalog
from hub.entitlements import courses_granted, desired_membership
from hub.settings import Settings
from hub.store import Database, Entitlement
from hub.store import repository as repo
from hub.store.repository import EntitlementUpdate
from tests.billing.conftest import FakeHub, course

NOW = datetime(2030, 1, 10, tzinfo=UTC)
GRACE = timedelta(days=3)


@dataclass
class Ent:
    username: str
    status: str = "active"
    course_id: str | None = None
    plan_id: str | None = None
    period_end: datetime | None = None


def desired(ents: list[Ent], catalog: Catalog, settings: Settings) -> dict[str, set[str]]:
    return desired_membership(ents, catalog, settings.payments.plans, now=NOW, grace=GRACE)


def test_every_catalog_course_has_a_group(catalog: Catalog, settings: Settings) -> None:
    assert desired([], catalog, settings) == {
        "course-python-101": set(),
        "course-data-201": set(),
        "course-intro": set(),
    }


def test_plans_grant_all_or_listed_courses(catalog: Catalog, settings: Settings) -> None:
    result = desired(
        [
            Ent("a", plan_id="all-access"),
            Ent("b", plan_id="data-only"),
            Ent("c", plan_id="retired-plan"),
        ],
        catalog,
        settings,
    )
    assert result["course-python-101"] == {"a"}
    assert result["course-data-201"] == {"a", "b"}


def test_statuses(catalog: Catalog, settings: Settings) -> None:
    ents = [
        Ent("active", course_id="python-101"),
        Ent("pending", "pending", course_id="python-101"),
        Ent("revoked", "revoked", course_id="python-101"),
        Ent("grace", "past_due", course_id="python-101", period_end=NOW - timedelta(days=2)),
        Ent("late", "past_due", course_id="python-101", period_end=NOW - timedelta(days=4)),
        Ent("unknown-end", "past_due", course_id="python-101"),
    ]
    assert desired(ents, catalog, settings)["course-python-101"] == {"active", "grace"}


def test_withdrawn_course_yields_no_group(settings: Settings) -> None:
    catalog = Catalog([course("data-201")])
    result = desired(
        [Ent("a", course_id="python-101"), Ent("b", plan_id="all-access")], catalog, settings
    )
    assert result == {"course-data-201": {"b"}}
    assert not courses_granted(
        [Ent("a", course_id="python-101")], catalog, settings.payments.plans, now=NOW, grace=GRACE
    )


async def test_withdrawn_course_group_left_alone_by_sync(db: Database, settings: Settings) -> None:
    with db.transaction() as session:
        repo.apply_update(
            session,
            EntitlementUpdate(
                username="alice",
                source="purchase",
                status="active",
                course_id="python-101",
                stripe_checkout_session_id="cs_1",
            ),
        )
        repo.apply_update(
            session,
            EntitlementUpdate(
                username="alice",
                source="purchase",
                status="active",
                course_id="data-201",
                stripe_checkout_session_id="cs_2",
            ),
        )
    hub = FakeHub({"alice"})
    hub.group_members["course-python-101"] = {"alice"}
    await make_access_sync(db, Catalog([course("data-201")]), settings, hub)()
    assert hub.group_members == {
        "course-python-101": {"alice"},
        "course-data-201": {"alice"},
        # Instructor groups come from course.yaml (none listed for this course).
        "instructors-data-201": set(),
    }
    assert not any(c[1] == "course-python-101" for c in hub.calls)


def test_apply_update_is_idempotent_and_keeps_stripe_ids(db: Database) -> None:
    first = EntitlementUpdate(
        username="alice",
        source="subscription",
        status="active",
        plan_id="all-access",
        stripe_subscription_id="sub_1",
        stripe_customer_id="cus_1",
        period_end=datetime(2030, 2, 1, tzinfo=UTC),
    )
    with db.transaction() as session:
        assert repo.apply_update(session, first)
        assert not repo.apply_update(session, first)
        later = EntitlementUpdate(
            username="alice",
            source="subscription",
            status="revoked",
            plan_id="all-access",
            stripe_subscription_id="sub_1",
        )
        assert repo.apply_update(session, later)
    with db.transaction() as session:
        [row] = session.scalars(sa.select(Entitlement)).all()
        assert (row.status, row.stripe_customer_id, row.period_end) == ("revoked", "cus_1", None)


def test_event_id_is_unique(db: Database) -> None:
    event = {"id": "evt_1", "type": "x", "created": 1, "data": {"object": {}}}
    with db.transaction() as session:
        repo.record_event(session, event, "applied")
    with pytest.raises(IntegrityError), db.transaction() as session:
        session.execute(
            sa.text(
                "INSERT INTO stripe_events "
                "(event_id, type, created, payload, received_at, outcome) "
                "VALUES ('evt_1', 'x', '2030-01-01', '{}', '2030-01-01', 'applied')"
            )
        )


def test_course_xor_plan_is_enforced(db: Database) -> None:
    with pytest.raises(IntegrityError), db.transaction() as session:
        session.add(
            Entitlement(username="a", source="manual", status="active", course_id="x", plan_id="y")
        )


def test_sqlite_uses_wal(db: Database) -> None:
    if db.engine.dialect.name != "sqlite":
        return
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000
