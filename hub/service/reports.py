"""What the pages and dashboards show, computed from LearnHub's database: pure functions.

Everything here takes rows that were already read (ORM objects or plain dicts) and returns
plain data, so it can be tested without a database, a hub or a web server. Money comes only from
the ledger of verified LearnHub payments (amounts of re-fetched Stripe objects), never from
webhook payloads or today's catalog price, so a price change does not rewrite history.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

from hub.access.hub_groups import parse_hub_time
from hub.access.status import DISPUTE_PREFIX, EntitlementReason, EntitlementStatus, PurchaseStatus
from hub.courses import course_id_from_group
from hub.entitlements import EntitlementLike, PurchaseLike
from hub.i18n.money import format_money


class CheckoutLike(PurchaseLike, Protocol):
    """What a purchase history reads from a checkout session row."""

    @property
    def session_id(self) -> str: ...

    @property
    def mode(self) -> str: ...

    @property
    def created_at(self) -> datetime: ...


class DatedEntitlement(EntitlementLike, Protocol):
    """An entitlement with its bookkeeping fields."""

    @property
    def source(self) -> str: ...

    @property
    def status_reason(self) -> str | None: ...

    @property
    def stripe_checkout_session_id(self) -> str | None: ...

    @property
    def stripe_subscription_id(self) -> str | None: ...

    @property
    def created_at(self) -> datetime: ...

    @property
    def updated_at(self) -> datetime: ...


def purchase_status(entitlement: DatedEntitlement | None) -> PurchaseStatus:
    """The status a learner sees for a purchase: active, pending, past_due, refunded, disputed,
    revoked, or open (checkout started, never paid)."""
    if entitlement is None:
        return PurchaseStatus.OPEN
    if entitlement.status != EntitlementStatus.REVOKED:
        return PurchaseStatus(entitlement.status)
    reason = entitlement.status_reason or ""
    if reason == EntitlementReason.REFUNDED:
        return PurchaseStatus.REFUNDED
    if reason.startswith(DISPUTE_PREFIX):
        return PurchaseStatus.DISPUTED
    return PurchaseStatus.REVOKED


@dataclass(frozen=True)
class PurchaseRow:
    """One line of a purchase history."""

    when: datetime
    course_id: str | None
    plan_id: str | None
    status: PurchaseStatus
    session_id: str | None


def purchase_history(
    checkouts: Iterable[CheckoutLike], entitlements: Iterable[DatedEntitlement]
) -> list[PurchaseRow]:
    """A user's checkouts with what became of them, newest first.

    One-off purchases are matched to their entitlement by checkout session id; a subscription
    entitlement is keyed by its subscription, so it is matched to the latest checkout of the
    same plan. Paid entitlements with no checkout row of ours (made before checkout sessions
    were recorded) still appear.
    """
    paid = [e for e in entitlements if e.source in ("purchase", "subscription")]
    by_session = {e.stripe_checkout_session_id: e for e in paid if e.stripe_checkout_session_id}
    by_plan: dict[str, DatedEntitlement] = {}
    for e in paid:
        if e.source == "subscription" and e.plan_id is not None:
            by_plan[e.plan_id] = e
    rows: list[PurchaseRow] = []
    used: set[int] = set()
    for checkout in sorted(checkouts, key=lambda c: c.created_at, reverse=True):
        ent = by_session.get(checkout.session_id)
        if ent is None and checkout.plan_id is not None:
            candidate = by_plan.get(checkout.plan_id)
            if candidate is not None and id(candidate) not in used:
                ent = candidate
        if ent is not None:
            used.add(id(ent))
        rows.append(
            PurchaseRow(
                when=checkout.created_at,
                course_id=checkout.course_id,
                plan_id=checkout.plan_id,
                status=purchase_status(ent),
                session_id=checkout.session_id,
            )
        )
    for e in paid:
        if id(e) not in used:
            rows.append(
                PurchaseRow(
                    when=e.created_at,
                    course_id=e.course_id,
                    plan_id=e.plan_id,
                    status=purchase_status(e),
                    session_id=e.stripe_checkout_session_id,
                )
            )
    return sorted(rows, key=lambda r: r.when, reverse=True)


# -- money -----------------------------------------------------------------------------------------


@dataclass
class Revenue:
    """Money received, in minor units per currency, and how it splits over courses."""

    gross: dict[str, int] = field(default_factory=dict)
    refunded: dict[str, int] = field(default_factory=dict)
    by_course: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def net(self) -> dict[str, int]:
        """Gross minus refunds, per currency."""
        currencies = set(self.gross) | set(self.refunded)
        return {c: self.gross.get(c, 0) - self.refunded.get(c, 0) for c in sorted(currencies)}


class PaymentLike(Protocol):
    """A row of the revenue ledger (:class:`hub.store.Payment`)."""

    @property
    def currency(self) -> str: ...

    @property
    def amount(self) -> int: ...

    @property
    def amount_refunded(self) -> int: ...

    @property
    def course_id(self) -> str | None: ...


def revenue_from_payments(payments: Iterable[PaymentLike]) -> Revenue:
    """Revenue from the ledger of verified LearnHub payments.

    The ledger is written only by fulfilment, from objects re-fetched from Stripe and checked to
    be LearnHub's (a recorded checkout session that paid for what LearnHub sold, or an invoice
    of a subscription such a checkout started), one row per Stripe id with its latest refunded
    amount. So neither an event for someone else's checkout on the same Stripe account nor a
    later payload with another amount moves it. ``by_course`` is net of refunds.
    """
    result = Revenue()

    def add(bucket: dict[str, int], currency: str, amount: int) -> None:
        bucket[currency] = bucket.get(currency, 0) + amount

    for payment in payments:
        currency = payment.currency
        add(result.gross, currency, payment.amount)
        if payment.amount_refunded:
            add(result.refunded, currency, payment.amount_refunded)
        if payment.course_id:
            net = payment.amount - payment.amount_refunded
            add(result.by_course.setdefault(payment.course_id, {}), currency, net)
    return result


def money(amount_minor: int, currency: str, lang: str = "en") -> str:
    """``6900, usd`` -> ``$69.00``; ``4900, jpy`` -> ``¥4,900`` (one formatter for all money:
    :func:`hub.i18n.money.format_money`)."""
    return format_money(amount_minor, currency, lang)


# -- enrolment and activity ---------------------------------------------------------------------


def week_start(moment: datetime) -> date:
    """The Monday of ``moment``'s week (UTC)."""
    day = moment.astimezone(UTC).date()
    return day - timedelta(days=day.weekday())


def enrolment_over_time(
    entitlements: Sequence[DatedEntitlement], course_ids: set[str], *, now: datetime
) -> list[tuple[str, int]]:
    """Learners with access at the end of each week, from the first entitlement to now.

    An entitlement counts from its creation until it was revoked (its last update); pending
    ones never count. Weeks are labelled by their Monday.

    One sweep: each entitlement covers a range of weeks, a learner's ranges are merged, and the
    weekly counts are a running sum of where merged ranges begin and end. Comparing every
    entitlement with every week took 8 s for 15,000 entitlements over a year on the loaded
    benchmark machine (``benchmarks/scale.py``); this is linear in the entitlements.
    """
    # Plan entitlements count when the plan covers the course: the caller passes those in.
    relevant = [
        e
        for e in entitlements
        if e.status != EntitlementStatus.PENDING
        and (e.course_id in course_ids or e.plan_id is not None)
    ]
    if not relevant:
        return []
    first = week_start(min(e.created_at for e in relevant))
    weeks = (week_start(now) - first).days // 7 + 1
    ends = [
        datetime.combine(first + timedelta(days=7 * (i + 1)), datetime.min.time(), tzinfo=UTC)
        for i in range(weeks)
    ]
    # Week i counts an entitlement when ends[i] > created_at and, if revoked, ends[i] <=
    # updated_at: the weeks lo..hi.
    spans: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for e in relevant:
        lo = bisect_right(ends, e.created_at)
        hi = weeks - 1
        if e.status == EntitlementStatus.REVOKED:
            hi = bisect_right(ends, e.updated_at) - 1
        if lo <= hi:
            spans[e.username].append((lo, hi))
    change = [0] * (weeks + 1)
    for ranges in spans.values():
        ranges.sort()
        lo, hi = ranges[0]
        for next_lo, next_hi in ranges[1:]:
            if next_lo <= hi + 1:
                hi = max(hi, next_hi)
                continue
            change[lo] += 1
            change[hi + 1] -= 1
            lo, hi = next_lo, next_hi
        change[lo] += 1
        change[hi + 1] -= 1
    series: list[tuple[str, int]] = []
    count = 0
    for i in range(weeks):
        count += change[i]
        series.append(((first + timedelta(days=7 * i)).isoformat(), count))
    return series


def status_counts(entitlements: Iterable[EntitlementLike]) -> dict[str, int]:
    """How many entitlements are in each status."""
    counts = Counter(e.status for e in entitlements)
    order = (
        EntitlementStatus.ACTIVE,
        EntitlementStatus.PAST_DUE,
        EntitlementStatus.PENDING,
        EntitlementStatus.REVOKED,
    )
    return {status.value: counts.get(status, 0) for status in order}


#: How recent a member's last activity must be to count as active.
ACTIVITY_WINDOW = timedelta(days=7)


def activity_share(
    users: Iterable[Mapping[str, Any]], members: set[str], *, now: datetime
) -> float:
    """Share of ``members`` whose hub ``last_activity`` is within :data:`ACTIVITY_WINDOW` (0..1)."""
    if not members:
        return 0.0
    since = now - ACTIVITY_WINDOW
    active = 0
    for user in users:
        if user.get("name") not in members:
            continue
        seen = parse_hub_time(user.get("last_activity"))
        if seen is not None and seen >= since:
            active += 1
    return active / len(members)


def recently_active_names(users: Iterable[Mapping[str, Any]], since: datetime) -> set[str]:
    """Names of the Hub users whose ``last_activity`` is ``since`` or later (the part of
    :func:`activity_share` that needs the Hub; the database counts which are members)."""
    names = set()
    for user in users:
        seen = parse_hub_time(user.get("last_activity"))
        if seen is not None and seen >= since and user.get("name"):
            names.add(str(user["name"]))
    return names


def members_by_course(desired: Mapping[str, set[str]]) -> dict[str, int]:
    """``{"course-x": {...}}`` -> ``{"x": count}``."""
    counts: dict[str, int] = defaultdict(int)
    for group, users in desired.items():
        course_id = course_id_from_group(group)
        if course_id is not None:
            counts[course_id] = len(users)
    return dict(counts)
