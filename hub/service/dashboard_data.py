"""What the operator dashboard reads from LearnHub's database: a fixed number of queries.

At 10,000 members with 200 courses (benchmarks/scale.py) the operator dashboard took 8.5 s
p50. Reading every entitlement and every payment as ORM objects cost about 3 s for 15,000 rows
on the loaded benchmark machine, and the enrolment chart compared every entitlement with every
week (8 s for a year of history). So here money and container-hours are summed by the database
(one ``GROUP BY`` each), entitlements come as light rows of the seven columns the figures use,
and the chart is one sweep over them (:func:`hub.service.reports.enrolment_over_time`). Three
queries a view, however many members, payments or server runs there are
(``tests/billing/test_dashboard_scale.py`` counts them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from hub.access.status import EntitlementStatus
from hub.courses import Catalog
from hub.entitlements import desired_membership
from hub.service.reports import Revenue, enrolment_over_time
from hub.settings import PlanSettings
from hub.store import Database, Entitlement, Payment
from hub.usage import container_hours_query


@dataclass(frozen=True)
class OperatorData:
    """The operator dashboard's figures that come from LearnHub's database."""

    #: Who should be in each course's learner group now (``course-<id>`` -> names).
    desired: dict[str, set[str]]
    #: Learners with access at the end of each week (``hub.service.reports``).
    enrolment: list[tuple[str, int]]
    revenue: Revenue
    #: Container-hours per course.
    hours: dict[str, float]


def entitlement_rows(
    session: Session,
) -> Sequence[sa.Row[str, str | None, str | None, str, datetime | None, datetime, datetime]]:
    """Every entitlement that counts for membership or enrolment (all but ``pending``), as
    light rows with only the columns those read (they satisfy ``DatedEntitlement``'s part
    that :func:`~hub.entitlements.desired_membership` and ``enrolment_over_time`` use)."""
    return session.execute(
        sa.select(
            Entitlement.username,
            Entitlement.course_id,
            Entitlement.plan_id,
            Entitlement.status,
            Entitlement.period_end,
            Entitlement.created_at,
            Entitlement.updated_at,
        ).where(Entitlement.status != EntitlementStatus.PENDING)
    ).all()


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
) -> OperatorData:
    """The operator dashboard's database figures, in one transaction (blocking)."""
    with db.transaction() as session:
        rows = entitlement_rows(session)
        revenue = revenue_totals(session)
        hours = container_hours_query(session)
    desired = desired_membership(rows, catalog, plans, now=now, grace=grace)
    enrolment = enrolment_over_time(rows, set(catalog.ids()), now=now)
    return OperatorData(desired=desired, enrolment=enrolment, revenue=revenue, hours=hours)
