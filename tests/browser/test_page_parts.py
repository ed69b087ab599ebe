"""The pages' pure parts, without a hub: language choice, charts, reports, route escaping."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from hub.i18n import MESSAGES, choose_language, negotiate, translate
from hub.service import charts
from hub.service.base import route
from hub.service.reports import (
    activity_share,
    enrolment_over_time,
    purchase_history,
    purchase_status,
    revenue_from_events,
)

NOW = datetime(2026, 11, 26, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, "en"),
        ("zh-CN,zh;q=0.9,en;q=0.8", "zh-CN"),
        ("en-US,en;q=0.9,zh-CN;q=0.8", "en"),
        ("zh-Hans-CN", "zh-CN"),
        ("zh-TW", "en"),
        ("fr-FR, zh;q=0.5", "zh-CN"),
        ("en;q=0.1, zh-CN;q=0.9", "zh-CN"),
        ("garbage;q=x", "en"),
    ],
)
def test_accept_language(header: str | None, expected: str) -> None:
    assert negotiate(header) == expected


def test_query_beats_cookie_beats_header() -> None:
    assert choose_language("en", "zh-CN", "zh-CN") == "en"
    assert choose_language(None, "zh-cn", "en") == "zh-CN"
    assert choose_language("klingon", None, "zh-CN") == "zh-CN"


def test_every_message_has_both_languages() -> None:
    missing = [key for key, entry in MESSAGES.items() if set(entry) != {"en", "zh-CN"}]
    assert missing == []
    assert translate("zh-CN", "buy", price="69.00 USD").startswith("购买")
    assert "69.00 USD" in translate("zh-CN", "buy", price="69.00 USD")


def test_route_escapes_the_prefix() -> None:
    pattern = re.compile(route("/c++/a.b/services/learnhub/", "admin") + "$")
    assert pattern.match("/c++/a.b/services/learnhub/admin")
    assert not pattern.match("/ccc/aXb/services/learnhub/admin")
    hostile = re.compile(route("/@/space%20word/services/learnhub/", "admin") + "$")
    assert hostile.match("/@/space%20word/services/learnhub/admin")


def test_charts_are_accessible_svg_and_escape_labels() -> None:
    svg = charts.bar_chart("Revenue <by> course", ["a&b", "c"], [3, 0], unit=" USD")
    assert svg.startswith("<svg") and 'role="img"' in svg
    assert "<title>Revenue &lt;by&gt; course</title>" in svg and "a&amp;b" in svg
    assert "<desc>a&amp;b: 3 USD; c: 0 USD</desc>" in svg
    line = charts.step_chart("Enrolment", [("2026-11-16", 1), ("2026-11-23", 4)])
    assert "<path" in line and line.count("<circle") == 2
    assert "<desc>no data</desc>" in charts.step_chart("Enrolment", [])
    with pytest.raises(ValueError):
        charts.bar_chart("x", ["a"], [1, 2])


@dataclass
class Ent:
    username: str
    course_id: str | None
    status: str
    created_at: datetime
    updated_at: datetime
    plan_id: str | None = None
    source: str = "purchase"
    status_reason: str | None = None
    period_end: datetime | None = None
    stripe_checkout_session_id: str | None = None
    stripe_subscription_id: str | None = None


@dataclass
class Checkout:
    session_id: str
    username: str
    course_id: str | None
    plan_id: str | None
    mode: str
    created_at: datetime


def test_purchase_history_statuses() -> None:
    t = NOW - timedelta(days=3)
    ents = [
        Ent(
            "ann",
            "a",
            "revoked",
            t,
            NOW,
            status_reason="refunded",
            stripe_checkout_session_id="cs_1",
        ),
        Ent("ann", "b", "active", t, t, stripe_checkout_session_id="cs_2"),
        Ent("ann", "c", "revoked", t, t, status_reason="dispute_lost"),
    ]
    checkouts = [
        Checkout("cs_1", "ann", "a", None, "payment", t),
        Checkout("cs_2", "ann", "b", None, "payment", t + timedelta(hours=1)),
        Checkout("cs_3", "ann", "d", None, "payment", t + timedelta(hours=2)),
    ]
    rows = purchase_history(checkouts, ents)
    assert [(r.course_id, r.status) for r in rows] == [
        ("d", "open"),
        ("b", "active"),
        ("a", "refunded"),
        ("c", "disputed"),
    ]
    assert purchase_status(None) == "open"


def _event(kind: str, created: int, obj: dict[str, object]) -> dict[str, object]:
    return {"type": kind, "created": created, "data": {"object": obj}}


def test_revenue_counts_each_payment_once_and_subtracts_refunds() -> None:
    session = {
        "id": "cs_1",
        "mode": "payment",
        "payment_status": "paid",
        "amount_total": 6900,
        "currency": "usd",
        "payment_intent": "pi_1",
        "metadata": {"learnhub_course": "algo"},
    }
    events = [
        _event("checkout.session.completed", 1, session),
        _event("checkout.session.completed", 2, session),  # redelivered
        _event(
            "checkout.session.completed", 3, {**session, "id": "cs_2", "payment_intent": "pi_2"}
        ),
        _event(
            "charge.refunded",
            4,
            {"id": "ch_1", "payment_intent": "pi_1", "currency": "usd", "amount_refunded": 6900},
        ),
        _event("invoice.paid", 5, {"id": "in_1", "amount_paid": 2900, "currency": "usd"}),
        _event(
            "checkout.session.completed",
            6,
            {"id": "cs_3", "mode": "payment", "payment_status": "unpaid", "amount_total": 100},
        ),
    ]
    revenue = revenue_from_events(events)
    assert revenue.gross == {"usd": 6900 * 2 + 2900}
    assert revenue.refunded == {"usd": 6900}
    assert revenue.net == {"usd": 6900 + 2900}
    assert revenue.by_course == {"algo": {"usd": 6900}}


def test_enrolment_over_time_and_activity() -> None:
    week1 = NOW - timedelta(days=14)
    ents = [
        Ent("ann", "a", "active", week1, week1),
        Ent("bob", "a", "revoked", week1, NOW - timedelta(days=6)),
        Ent("cat", "a", "pending", week1, week1),
        Ent("dan", "b", "active", week1, week1),
    ]
    series = enrolment_over_time(ents, {"a"}, now=NOW)
    # Weeks of 9, 16 and 23 November; bob lost access on the 20th, before the second week ended.
    assert series == [("2026-11-09", 2), ("2026-11-16", 1), ("2026-11-23", 1)]
    assert enrolment_over_time([], {"a"}, now=NOW) == []
    users: list[dict[str, str | None]] = [
        {"name": "ann", "last_activity": (NOW - timedelta(days=1)).isoformat()},
        {"name": "bob", "last_activity": (NOW - timedelta(days=30)).isoformat()},
        {"name": "eve", "last_activity": NOW.isoformat()},  # not a member
        {"name": "dan", "last_activity": None},
    ]
    assert activity_share(users, {"ann", "bob", "dan", "zed"}, now=NOW) == 0.25
    assert activity_share(users, set(), now=NOW) == 0.0
