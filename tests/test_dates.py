"""Dates as the viewer reads them (hub/i18n/dates.py): their locale, their zone, the zone named."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from hub.i18n.dates import format_date, format_datetime, iso, normalize_zone, viewer_zone

MOMENT = datetime(2026, 12, 6, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("lang", "zone", "shown"),
    [
        ("zh-CN", "Asia/Shanghai", "2026年12月6日 08:00 (中国标准时间)"),
        ("en", "Asia/Shanghai", "Dec 6, 2026, 8:00\u202fAM China Standard Time"),
        ("en", "UTC", "Dec 6, 2026, 12:00\u202fAM UTC"),
        ("zh-CN", "UTC", "2026年12月6日 00:00 (UTC)"),
        # The day changes with the zone, and summer time is the zone's own.
        ("en", "America/New_York", "Dec 5, 2026, 7:00\u202fPM EST"),
    ],
)
def test_a_moment_is_shown_in_the_zone_with_the_zone_named(
    lang: str, zone: str, shown: str
) -> None:
    assert format_datetime(MOMENT, lang, zone) == shown


def test_summer_time_and_days_and_iso() -> None:
    july = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    assert format_datetime(july, "en", "America/New_York").endswith("8:00\u202fAM EDT")
    assert format_date(MOMENT, "zh-CN", "America/New_York") == "2026年12月5日"
    # Exports and <time datetime> keep ISO 8601 with the offset; a naive value is UTC.
    assert iso(MOMENT) == "2026-12-06T00:00:00+00:00"
    assert iso(MOMENT.replace(tzinfo=None)) == "2026-12-06T00:00:00+00:00"
    assert iso(None) == ""


@pytest.mark.parametrize(
    "bad",
    ["", "Mars/Base", "asia/shanghai", "../../../etc/passwd", "/etc/localtime", "Asia/", "x" * 200],
)
def test_only_zones_of_the_tz_database_count(bad: str) -> None:
    assert normalize_zone(bad) is None
    # A bad cookie or saved value is skipped, never an error: UTC, named as such.
    assert viewer_zone(bad) == "UTC"
    assert format_datetime(MOMENT, "en", bad).endswith("UTC")


def test_the_cookie_then_the_saved_zone_then_utc() -> None:
    assert viewer_zone("Europe/Berlin", "Asia/Shanghai") == "Europe/Berlin"
    assert viewer_zone(None, "Asia/Shanghai") == "Asia/Shanghai"
    assert viewer_zone("nonsense", "Asia/Shanghai") == "Asia/Shanghai"
    assert viewer_zone(None, None) == "UTC"
