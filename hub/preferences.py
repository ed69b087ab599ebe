"""A member's saved time zone (``member_preferences``): read for pages and mails, written by
the time zone form (``hub/service/time_zone.py``)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from hub.i18n.dates import normalize_zone
from hub.store import Database, MemberPreference, utcnow


def zone_of(session: Session, username: str) -> str | None:
    """The IANA zone ``username`` chose, or None when they chose none (or it left tzdata)."""
    row = session.get(MemberPreference, username)
    return normalize_zone(row.time_zone) if row is not None else None


def saved_zone(db: Database, username: str) -> str | None:
    """:func:`zone_of` in its own transaction."""
    with db.transaction() as session:
        return zone_of(session, username)


def save_zone(db: Database, username: str, zone: str) -> None:
    """Store ``zone`` for ``username``. The caller checked it (:func:`normalize_zone`); a name
    that is not a zone is a bug here: ValueError, nothing saved."""
    if normalize_zone(zone) != zone:
        raise ValueError(f"not an IANA time zone: {zone!r}")
    with db.transaction() as session:
        row = session.get(MemberPreference, username)
        if row is None:
            row = MemberPreference(username=username)
            session.add(row)
        row.time_zone = zone
        row.updated_at = utcnow()
