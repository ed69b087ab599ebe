"""Dates and times as the viewer reads them: their language, their time zone, the zone named.

LearnHub stores every moment as aware UTC (:class:`hub.store.models.UTCDateTime`). Every date
or time a page or a mail shows goes through :func:`format_datetime` (or :func:`format_date`),
which converts to the viewer's IANA zone and formats with Babel in the viewer's locale, always
naming the zone: ``Dec 6, 2026, 8:00 AM EST`` / ``2026年12月6日 08:00 (中国标准时间)``. A
``<time datetime=...>`` attribute and the exports keep ISO 8601 with its offset (:func:`iso`).

Whose zone: service pages run no script (their CSP says ``script-src 'none'``), so the browser
cannot tell. The zone is a preference: the ``learnhub-tz`` cookie that the time zone form sets
for anyone (visitors too), else the member's saved choice (``member_preferences``), else UTC,
labelled as UTC. :func:`viewer_zone` is that rule, for the service's pages and the Hub's.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from zoneinfo import ZoneInfo

from hub.i18n import babel_locale, translate

#: The zone of visitors and members who chose none.
DEFAULT_ZONE = "UTC"
#: Cookie that remembers the zone chosen on the time zone form (service and Hub pages share it).
TZ_COOKIE = "learnhub-tz"
#: The longest zone name the form takes (the longest IANA name has 32 characters).
MAX_ZONE_LENGTH = 64


@cache
def known_zones() -> frozenset[str]:
    """Every IANA zone name this machine's tz database has (read once)."""
    from zoneinfo import available_timezones

    return frozenset(available_timezones())


@cache
def zone_choices() -> tuple[str, ...]:
    """The zones the form offers, sorted: the ``Area/City`` names and UTC (no legacy aliases
    such as ``US/Eastern`` or ``Etc/GMT+5``, which also stay accepted when typed)."""
    names = {
        name
        for name in known_zones()
        if "/" in name and not name.startswith(("Etc/", "SystemV/", "US/", "posix/", "right/"))
    }
    return (DEFAULT_ZONE, *sorted(names))


def normalize_zone(name: str | None) -> str | None:
    """``name`` if it is an IANA zone of the tz database (exact spelling), else None.

    Only names the database lists count: ZoneInfo alone would also open any file under the
    tz folder, and a cookie is whatever the client sends.
    """
    if not name:
        return None
    name = name.strip()
    if len(name) > MAX_ZONE_LENGTH or name not in known_zones():
        return None
    return name


def viewer_zone(cookie: str | None, saved: str | None = None) -> str:
    """The zone to show times in: the ``learnhub-tz`` cookie, else the member's saved choice,
    else UTC. Invalid values are skipped, never an error."""
    return normalize_zone(cookie) or normalize_zone(saved) or DEFAULT_ZONE


def _aware(moment: datetime) -> datetime:
    # The store hands out aware UTC; a naive value can only be UTC read raw from a query.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def zone_label(moment: datetime, lang: str, zone: str) -> str:
    """How ``lang`` names ``zone`` at ``moment``: its common abbreviation where CLDR has one
    (``UTC``, ``EST``), else the zone's long name (``中国标准时间``, ``China Standard Time``),
    so the label is never a bare offset when a name exists."""
    from babel.dates import format_time

    tz = ZoneInfo(zone)
    local = _aware(moment).astimezone(tz)
    locale = babel_locale(lang)
    short = format_time(local, "z", tzinfo=tz, locale=locale)
    if short.isalpha():
        return short
    return format_time(local, "zzzz", tzinfo=tz, locale=locale)


def format_datetime(moment: datetime, lang: str, zone: str = DEFAULT_ZONE) -> str:
    """``moment`` in ``zone``, in ``lang``'s conventions (medium date, short time), with the
    zone named: ``Dec 6, 2026, 8:00 AM UTC``, ``2026年12月6日 08:00 (中国标准时间)``."""
    from babel.dates import format_date as babel_date
    from babel.dates import format_time as babel_time
    from babel.dates import get_datetime_format

    tz = ZoneInfo(normalize_zone(zone) or DEFAULT_ZONE)
    local = _aware(moment).astimezone(tz)
    locale = babel_locale(lang)
    when = (
        str(get_datetime_format("medium", locale=locale))
        .replace("{1}", babel_date(local, "medium", locale=locale))
        .replace("{0}", babel_time(local, "short", tzinfo=tz, locale=locale))
    )
    return translate(lang, "datetime_in_zone", when=when, zone=zone_label(local, lang, tz.key))


def format_date(moment: datetime, lang: str, zone: str = DEFAULT_ZONE) -> str:
    """The calendar day of ``moment`` in ``zone`` (a certificate's issue date, an
    announcement's day): ``Dec 6, 2026`` / ``2026年12月6日``."""
    from babel.dates import format_date as babel_date

    tz = ZoneInfo(normalize_zone(zone) or DEFAULT_ZONE)
    return babel_date(_aware(moment).astimezone(tz), "medium", locale=babel_locale(lang))


def iso(moment: datetime | None) -> str:
    """ISO 8601 with the offset (UTC), for ``<time datetime=...>`` and exports; "" for None."""
    return _aware(moment).isoformat() if moment is not None else ""


def formatter(lang: str, zone: str) -> dict[str, object]:
    """Template helpers for one viewer: ``when(moment)``, ``day(moment)``, ``iso(moment)`` and
    the zone's name."""

    def when(moment: datetime | None) -> str:
        return format_datetime(moment, lang, zone) if moment is not None else ""

    def day(moment: datetime | None) -> str:
        return format_date(moment, lang, zone) if moment is not None else ""

    return {"when": when, "day": day, "iso": iso, "time_zone": zone}
