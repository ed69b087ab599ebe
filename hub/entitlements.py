"""Entitlements -> desired course-group membership, as pure functions.

An entitlement says *why* someone may open a course (a purchase, a subscription plan, a manual
grant, an instructor role). This module turns the entitlements into the membership that
:func:`hub.access.hub_groups.apply_membership` should make real: ``{"course-<id>": {user, ...}}``
with one key for *every* course in the catalog, so a revoked learner is removed and a course
nobody is entitled to ends up empty. Nothing here touches the database, Stripe or the Hub.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Protocol

from hub.access.status import EntitlementStatus
from hub.courses import Catalog
from hub.settings import PlanSettings


class PurchaseLike(Protocol):
    """Whose purchase, and of what: a course or a plan (entitlements and checkout rows)."""

    @property
    def username(self) -> str: ...

    @property
    def course_id(self) -> str | None: ...

    @property
    def plan_id(self) -> str | None: ...


class EntitlementLike(PurchaseLike, Protocol):
    """What these functions read from an entitlement (the ORM row satisfies it)."""

    @property
    def status(self) -> str: ...

    @property
    def period_end(self) -> datetime | None: ...


def grants_access(entitlement: EntitlementLike, *, now: datetime, grace: timedelta) -> bool:
    """Whether this entitlement currently gives access.

    ``active`` does; ``past_due`` does until ``period_end + grace`` (a failed renewal gets the
    learner a few days to fix their card, not a free period); ``pending`` (payment not settled)
    and ``revoked`` do not.
    """
    if entitlement.status == EntitlementStatus.ACTIVE:
        return True
    if entitlement.status == EntitlementStatus.PAST_DUE:
        # Without a known period end there is nothing to measure the grace from: no access.
        return entitlement.period_end is not None and now <= entitlement.period_end + grace
    return False


def only_adds_access(entitlement: EntitlementLike, *, now: datetime, grace: timedelta) -> bool:
    """Whether making this entitlement real can only add access and never take any away.

    True for a one-off course purchase that gives access now: its learner should be in that
    course's group, and nothing else about them changes. A plan (its courses can change or
    shrink) or an entitlement that does not give access (a refund, a dispute, an unpaid
    renewal) may take access away, which only a sync that reads the groups can do.
    """
    return (
        entitlement.course_id is not None
        and entitlement.plan_id is None
        and grants_access(entitlement, now=now, grace=grace)
    )


def plan_courses(plan: PlanSettings, catalog: Catalog) -> set[str]:
    """Courses a plan grants that are in the catalog now."""
    if plan.courses == "all":
        return set(catalog.ids())
    return {course_id for course_id in plan.courses if course_id in catalog}


def entitled_courses(
    entitlement: EntitlementLike, catalog: Catalog, plans: Sequence[PlanSettings]
) -> set[str]:
    """Catalog courses named by one entitlement, whatever its status.

    A course withdrawn from the catalog, or a plan no longer configured, names nothing.
    """
    if entitlement.course_id is not None:
        return {entitlement.course_id} if entitlement.course_id in catalog else set()
    plan = next((p for p in plans if p.id == entitlement.plan_id), None)
    return set() if plan is None else plan_courses(plan, catalog)


def desired_membership(
    entitlements: Iterable[EntitlementLike],
    catalog: Catalog,
    plans: Sequence[PlanSettings],
    *,
    now: datetime,
    grace: timedelta,
) -> dict[str, set[str]]:
    """The learner groups of every catalog course and who should be in them."""
    desired: dict[str, set[str]] = {entry.course.learner_group: set() for entry in catalog}
    for entitlement in entitlements:
        if not grants_access(entitlement, now=now, grace=grace):
            continue
        for course_id in entitled_courses(entitlement, catalog, plans):
            entry = catalog.get(course_id)
            if entry is not None:
                desired[entry.course.learner_group].add(entitlement.username)
    return desired


def courses_granted(
    entitlements: Iterable[EntitlementLike],
    catalog: Catalog,
    plans: Sequence[PlanSettings],
    *,
    now: datetime,
    grace: timedelta,
) -> set[str]:
    """Catalog courses that ``entitlements`` (one person's) give access to now."""
    courses: set[str] = set()
    for entitlement in entitlements:
        if grants_access(entitlement, now=now, grace=grace):
            courses |= entitled_courses(entitlement, catalog, plans)
    return courses
