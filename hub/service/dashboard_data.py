"""What the operator dashboard reads from LearnHub's database: a fixed number of small answers.

At 10,000 members with 200 courses (benchmarks/scale.py) the operator dashboard took 8.5 s
p50; a first fix read every entitlement as a light row and computed the figures in Python, 0.9 s
p50, still growing with the members (15,500 rows a view). Now no view reads entitlements as rows:

- **who has access** (N, the members per course shown, and how many of the recently active
  users are members) is counted by the database: ``COUNT(DISTINCT username)`` over the rows
  that give access now, with ``GROUP BY`` course for the page's courses;
- **the enrolment chart** comes from rows per week kept up to date on every write
  (:mod:`hub.store.enrolment_summary`, migration 0020);
- **money and container-hours** are summed by the database (one ``GROUP BY`` each).

So a view runs the same few statements however many members, payments or server runs there are,
and gets back integers, not rows. :func:`operator_data_from_rows` is the definition all of this
must equal, computed from every row (``tests/billing/test_dashboard_scale.py`` and
``benchmarks/scale_dashboard.py`` compare the two).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from hub.access.status import EntitlementStatus
from hub.courses import Catalog
from hub.entitlements import desired_membership, plan_courses
from hub.service.reports import PaymentLike, Revenue, enrolment_over_time, revenue_from_payments
from hub.settings import PlanSettings
from hub.store import Database, Entitlement, Payment
from hub.store.enrolment_summary import enrolment_series
from hub.usage import container_hours_query

#: Names per ``IN (...)`` when counting which active users are members (SQLite allows 32,766
#: bound values in a statement): one statement up to this many recently active users.
NAMES_PER_QUERY = 20_000


@dataclass(frozen=True)
class OperatorData:
    """The operator dashboard's figures that come from LearnHub's database."""

    #: Members with access to at least one catalog course now (N).
    members: int
    #: Members with access per course, for the courses asked for (the page's).
    per_course: dict[str, int]
    #: How many of the given recently active users are members (None: none given).
    active_members: int | None
    #: Learners with access at the end of each week (``hub.service.reports``).
    enrolment: list[tuple[str, int]]
    revenue: Revenue
    #: Container-hours per course.
    hours: dict[str, float]


def _gives_access(now: datetime, grace: timedelta) -> sa.ColumnElement[bool]:
    """:func:`hub.entitlements.grants_access` as SQL: active, or past due within the grace."""
    return sa.or_(
        Entitlement.status == EntitlementStatus.ACTIVE,
        sa.and_(
            Entitlement.status == EntitlementStatus.PAST_DUE,
            Entitlement.period_end.is_not(None),
            Entitlement.period_end >= now - grace,
        ),
    )


def _plans_by_course(catalog: Catalog, plans: Sequence[PlanSettings]) -> dict[str, list[str]]:
    """{plan id: its catalog courses} for the configured plans that grant any."""
    granted = {plan.id: sorted(plan_courses(plan, catalog)) for plan in plans}
    return {plan_id: courses for plan_id, courses in granted.items() if courses}


def members_query(
    catalog: Catalog, plans: Sequence[PlanSettings], *, now: datetime, grace: timedelta
) -> sa.Select[Any]:
    """The names of everyone with access to some catalog course now (one row per entitlement
    that gives it: count them with ``DISTINCT``)."""
    covered = [Entitlement.course_id.in_(catalog.ids())]
    live_plans = list(_plans_by_course(catalog, plans))
    if live_plans:
        covered.append(Entitlement.plan_id.in_(live_plans))
    return sa.select(Entitlement.username).where(_gives_access(now, grace), sa.or_(*covered))


def count_members(
    session: Session,
    catalog: Catalog,
    plans: Sequence[PlanSettings],
    *,
    now: datetime,
    grace: timedelta,
    among: Collection[str] | None = None,
) -> int:
    """How many people have access to a catalog course now (of ``among`` only, when given)."""
    query = members_query(catalog, plans, now=now, grace=grace)
    if among is None:
        return int(session.scalar(_count_distinct(query)) or 0)
    names = sorted(set(among))
    total = 0
    for start in range(0, len(names), NAMES_PER_QUERY):
        chunk = names[start : start + NAMES_PER_QUERY]
        part = query.where(Entitlement.username.in_(chunk))
        total += int(session.scalar(_count_distinct(part)) or 0)
    return total


def _count_distinct(query: sa.Select[Any]) -> sa.Select[Any]:
    names = query.subquery()
    return sa.select(sa.func.count(sa.distinct(names.c.username)))


def members_per_course(
    session: Session,
    catalog: Catalog,
    plans: Sequence[PlanSettings],
    course_ids: Sequence[str],
    *,
    now: datetime,
    grace: timedelta,
) -> dict[str, int]:
    """Members with access to each of ``course_ids`` now, counted by the database in one
    statement: the course's own entitlements and those of the plans that grant it."""
    shown = [c for c in course_ids if c in catalog]
    counts = dict.fromkeys(course_ids, 0)
    if not shown:
        return counts
    access = _gives_access(now, grace)
    parts: list[Any] = [
        sa.select(Entitlement.course_id.label("course"), Entitlement.username).where(
            access, Entitlement.course_id.in_(shown)
        )
    ]
    # (course, plan) for every shown course a plan grants, as a derived table to join.
    pairs = [
        sa.select(sa.literal(c, sa.String).label("course"), sa.literal(p, sa.String).label("plan"))
        for p, courses in _plans_by_course(catalog, plans).items()
        for c in shown
        if c in courses
    ]
    if pairs:
        mapping: Any = sa.union_all(*pairs) if len(pairs) > 1 else pairs[0]
        granted = mapping.subquery()
        parts.append(
            sa.select(granted.c.course, Entitlement.username)
            .join(granted, granted.c.plan == Entitlement.plan_id)
            .where(access)
        )
    combined: Any = sa.union_all(*parts) if len(parts) > 1 else parts[0]
    both = combined.subquery()
    rows = session.execute(
        sa.select(both.c.course, sa.func.count(sa.distinct(both.c.username))).group_by(
            both.c.course
        )
    )
    for course_id, count in rows:
        counts[str(course_id)] = int(count)
    return counts


def revenue_totals(session: Session) -> Revenue:
    """The revenue ledger summed by the database per course and currency; the same figures as
    :func:`hub.service.reports.revenue_from_payments` over every row."""
    result = Revenue()
    rows = session.execute(
        sa.select(
            Payment.course_id,
            Payment.currency,
            sa.func.sum(Payment.amount),
            sa.func.sum(Payment.amount_refunded),
        ).group_by(Payment.course_id, Payment.currency)
    )
    for course_id, currency, amount, refunded in rows:
        # PostgreSQL sums bigints as numeric (Decimal): money stays in whole minor units.
        amount, refunded = int(amount or 0), int(refunded or 0)
        result.gross[currency] = result.gross.get(currency, 0) + amount
        if refunded:
            result.refunded[currency] = result.refunded.get(currency, 0) + refunded
        if course_id:
            per_course = result.by_course.setdefault(course_id, {})
            per_course[currency] = per_course.get(currency, 0) + amount - refunded
    return result


def read_operator_data(
    db: Database,
    catalog: Catalog,
    plans: Sequence[PlanSettings],
    *,
    now: datetime,
    grace: timedelta,
    course_ids: Sequence[str] = (),
    active_users: Collection[str] | None = None,
) -> OperatorData:
    """The operator dashboard's database figures, in one transaction (blocking): members per
    course for ``course_ids``, and how many of ``active_users`` are members."""
    with db.transaction() as session:
        members = count_members(session, catalog, plans, now=now, grace=grace)
        per_course = members_per_course(session, catalog, plans, course_ids, now=now, grace=grace)
        active = None
        if active_users is not None:
            active = count_members(
                session, catalog, plans, now=now, grace=grace, among=active_users
            )
        enrolment = enrolment_series(session, catalog.ids(), now=now)
        revenue = revenue_totals(session)
        hours = container_hours_query(session)
    return OperatorData(members, per_course, active, enrolment, revenue, hours)


def operator_data_from_rows(
    entitlements: Sequence[Entitlement],
    payments: Iterable[PaymentLike],
    hours: dict[str, float],
    catalog: Catalog,
    plans: Sequence[PlanSettings],
    *,
    now: datetime,
    grace: timedelta,
    course_ids: Sequence[str] = (),
    active_users: Collection[str] | None = None,
) -> OperatorData:
    """The same figures from every row, by the pure functions that define them (what the
    dashboard computed on each view before: the reference the tests and the benchmark compare
    :func:`read_operator_data` with)."""
    desired = desired_membership(entitlements, catalog, plans, now=now, grace=grace)
    members = set().union(*desired.values()) if desired else set()
    active = None
    if active_users is not None:
        active = len(members & set(active_users))
    per_course = {}
    for course_id in course_ids:
        entry = catalog.get(course_id)
        per_course[course_id] = len(desired[entry.course.learner_group]) if entry else 0
    return OperatorData(
        members=len(members),
        per_course=per_course,
        active_members=active,
        enrolment=enrolment_over_time(entitlements, set(catalog.ids()), now=now),
        revenue=revenue_from_payments(payments),
        hours=hours,
    )
