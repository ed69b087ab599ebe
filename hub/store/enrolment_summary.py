"""The operator dashboard's enrolment chart, kept as a few rows per week (migration 0020).

The chart counts, at the end of each week, the learners with access then: an entitlement
counts from its creation until it was revoked (its last update), ``pending`` never counts, and
a learner with several entitlements counts once. Computing that from every entitlement on each
view read 15,500 rows at 10,000 members and grew with them (benchmarks/scale.py). Here each
learner's weeks of access are merged into ranges once, when their entitlements are written, and
the table ``dashboard_enrolment_weeks`` keeps per week how many ranges begin minus how many
end there (``starts``) and how many counted entitlements were created in it (``created``, for
the chart's first week). A view reads one row per week of history and adds them up.

How it stays true:

- **Every ORM write of an entitlement** goes through :func:`install`'s flush hooks on the
  :class:`~hub.store.Database`'s sessions: before a flush they read the learners' rows as they
  are, after it as they became, and add the difference of their ranges to the weeks, in the
  same transaction (a rollback takes both back). A write with a Core ``UPDATE``/``INSERT`` on
  ``entitlements`` bypasses them (LearnHub has none); :func:`rebuild` makes the table right
  again, as the dashboard does whenever the catalog's courses change what counts.
- **The catalog**: only entitlements of a course in the catalog (or of a plan) count. The weeks
  are kept for every course except those in ``excluded`` (``dashboard_enrolment_state``), and
  the state remembers every course id an entitlement has named (``seen``). A view whose catalog
  leaves out other courses than ``excluded`` rebuilds the table once for that catalog.

The figures equal the whole-table definition (:func:`hub.service.reports.enrolment_over_time`),
which ``tests/billing/test_dashboard_scale.py`` compares on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from hub.store.models import Base, Entitlement, UTCDateTime

#: Learners whose rows one query reads (SQLite allows 32,766 bound values per statement).
USERS_PER_QUERY = 500
#: Where the flush hooks keep what they read before a flush, in ``Session.info``.
_PENDING = "learnhub.enrolment_summary.before"


class EnrolmentWeek(Base):
    """One week of the enrolment chart: the change of learners with access, and entitlements
    created (counted ones only)."""

    __tablename__ = "dashboard_enrolment_weeks"

    #: The Monday of the week (UTC).
    week: Mapped[date] = mapped_column(sa.Date, primary_key=True)
    #: Learners whose access begins this week minus those whose access ends.
    starts: Mapped[int] = mapped_column(sa.Integer, default=0)
    #: Counted entitlements created this week (the chart begins at the first such week).
    created: Mapped[int] = mapped_column(sa.Integer, default=0)


class EnrolmentState(Base):
    """Which courses the weeks leave out, and every course id entitlements named (one row)."""

    __tablename__ = "dashboard_enrolment_state"

    id: Mapped[int] = mapped_column(primary_key=True)
    excluded: Mapped[list[str]] = mapped_column(sa.JSON, default=list)
    seen: Mapped[list[str]] = mapped_column(sa.JSON, default=list)
    #: How many entitlements there were, and their latest update, when the weeks were last
    #: made true: a write that bypassed the hooks changes one of them, and the next view
    #: rebuilds.
    entitlements: Mapped[int] = mapped_column(sa.Integer, default=0)
    last_update: Mapped[datetime | None] = mapped_column(UTCDateTime())


STATE_ID = 1

_weeks = sa.Table("dashboard_enrolment_weeks", Base.metadata)
_state = sa.Table("dashboard_enrolment_state", Base.metadata)


def monday(moment: datetime) -> date:
    """The Monday of ``moment``'s week (UTC), as :func:`hub.service.reports.week_start`."""
    day = moment.astimezone(UTC).date()
    return day - timedelta(days=day.weekday())


@dataclass(frozen=True)
class _Row:
    username: str
    course_id: str | None
    plan_id: str | None
    status: str
    created_at: datetime
    updated_at: datetime


def _counted(row: _Row, excluded: Collection[str]) -> bool:
    # As enrolment_over_time: not pending, and a course of the catalog or a plan.
    if row.status == "pending":
        return False
    if row.course_id is not None:
        return row.course_id not in excluded
    return row.plan_id is not None


def contributions(rows: Iterable[_Row], excluded: Collection[str]) -> dict[date, list[int]]:
    """``{week: [starts, created]}`` of the learners of ``rows`` (all rows of each of them).

    A row covers the weeks from its creation's week up to, for a revoked one, the week before
    its revocation's (the week ends after the revocation, so it does not count); a learner's
    ranges are merged, so they count once per week, as :func:`enrolment_over_time` does.
    """
    spans: dict[str, list[tuple[date, date | None]]] = defaultdict(list)
    weeks: dict[date, list[int]] = defaultdict(lambda: [0, 0])
    for row in rows:
        if not _counted(row, excluded):
            continue
        start = monday(row.created_at)
        weeks[start][1] += 1
        end = monday(row.updated_at) if row.status == "revoked" else None
        if end is None or end > start:
            spans[row.username].append((start, end))
    for ranges in spans.values():
        # Open ranges (access now) last for ever: date.max stands for "no end".
        ranges.sort(key=lambda r: (r[0], r[1] or date.max))
        lo, hi = ranges[0][0], ranges[0][1] or date.max
        for next_lo, next_hi in ranges[1:]:
            if next_lo <= hi:
                hi = max(hi, next_hi or date.max)
                continue
            _span(weeks, lo, hi)
            lo, hi = next_lo, next_hi or date.max
        _span(weeks, lo, hi)
    return {week: values for week, values in weeks.items() if values != [0, 0]}


def _span(weeks: dict[date, list[int]], lo: date, hi: date) -> None:
    weeks[lo][0] += 1
    if hi != date.max:
        weeks[hi][0] -= 1


_COLUMNS = (
    Entitlement.username,
    Entitlement.course_id,
    Entitlement.plan_id,
    Entitlement.status,
    Entitlement.created_at,
    Entitlement.updated_at,
)


def _rows_of(conn: Connection, users: Collection[str]) -> Iterator[_Row]:
    names = sorted(users)
    for start in range(0, len(names), USERS_PER_QUERY):
        chunk = names[start : start + USERS_PER_QUERY]
        for row in conn.execute(sa.select(*_COLUMNS).where(Entitlement.username.in_(chunk))):
            yield _Row(*row)


@dataclass(frozen=True)
class _State:
    excluded: set[str]
    seen: set[str]
    stamp: tuple[int, datetime | None]


def _read_state(conn: Connection) -> _State | None:
    found = conn.execute(
        sa.select(
            _state.c.excluded, _state.c.seen, _state.c.entitlements, _state.c.last_update
        ).where(_state.c.id == STATE_ID)
    ).first()
    if found is None:
        return None
    return _State(set(found[0] or ()), set(found[1] or ()), (found[2], found[3]))


def _stamp(conn: Connection) -> tuple[int, datetime | None]:
    """How many entitlements there are and their latest update: one aggregate, in the database."""
    count, last = conn.execute(
        sa.select(sa.func.count(Entitlement.id), sa.func.max(Entitlement.updated_at))
    ).one()
    return int(count or 0), last


def _write_state(conn: Connection, excluded: Iterable[str], seen: Iterable[str]) -> None:
    count, last = _stamp(conn)
    values = {
        "excluded": sorted(excluded),
        "seen": sorted(seen),
        "entitlements": count,
        "last_update": last,
    }
    updated = conn.execute(_state.update().where(_state.c.id == STATE_ID).values(**values))
    if updated.rowcount == 0:
        conn.execute(_state.insert().values(id=STATE_ID, **values))


def _add(conn: Connection, delta: dict[date, list[int]]) -> None:
    """Add ``delta`` to the weeks in one upsert: two transactions that add to a week nobody
    had yet must both succeed (on PostgreSQL the second waits for the first's row)."""
    rows = [
        {"week": w, "starts": v[0], "created": v[1]}
        for w, v in sorted(delta.items())
        if v != [0, 0]
    ]
    if not rows:
        return
    insert = (sqlite_insert if conn.dialect.name == "sqlite" else postgresql_insert)(_weeks)
    statement = insert.values(rows)
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=[_weeks.c.week],
            set_={
                "starts": _weeks.c.starts + statement.excluded.starts,
                "created": _weeks.c.created + statement.excluded.created,
            },
        )
    )


def _current(conn: Connection, state: _State | None, course_ids: Collection[str]) -> bool:
    """Whether the weeks hold the chart of ``course_ids`` and every write reached them."""
    if state is None or state.excluded != state.seen - set(course_ids):
        return False
    return state.stamp == _stamp(conn)


def _all_rows(conn: Connection) -> list[_Row]:
    return [_Row(*row) for row in conn.execute(sa.select(*_COLUMNS))]


def rebuild(conn: Connection, excluded: Collection[str]) -> None:
    """Compute every week again from every entitlement, leaving out ``excluded`` courses (the
    migration's backfill; a view rebuilds for its own catalog when it must)."""
    _rebuild(conn, _all_rows(conn), excluded)


def _rebuild(conn: Connection, rows: list[_Row], excluded: Collection[str]) -> None:
    seen = {row.course_id for row in rows if row.course_id is not None}
    conn.execute(_weeks.delete())
    weeks = contributions(rows, set(excluded))
    if weeks:
        conn.execute(
            _weeks.insert(),
            [{"week": w, "starts": v[0], "created": v[1]} for w, v in sorted(weeks.items())],
        )
    _write_state(conn, excluded, seen)


def enrolment_series(
    session: Session, course_ids: Collection[str], *, now: datetime
) -> list[tuple[str, int]]:
    """Learners with access at the end of each week, from the first counted entitlement's week
    to ``now``'s: :func:`hub.service.reports.enrolment_over_time` over every entitlement of
    ``course_ids`` and of any plan, from the weekly rows (rebuilt first when the courses that
    count changed since they were computed)."""
    conn = session.connection()
    state = _read_state(conn)
    if not _current(conn, state, course_ids):
        # Computed for other courses, or written past the hooks: once from every row.
        rows = _all_rows(conn)
        seen = {row.course_id for row in rows if row.course_id is not None}
        _rebuild(conn, rows, seen - set(course_ids))
    weeks = conn.execute(
        sa.select(_weeks.c.week, _weeks.c.starts, _weeks.c.created).order_by(_weeks.c.week)
    ).all()
    created = [week for week, _starts, made in weeks if made]
    if not created:
        return []
    first, last = min(created), monday(now)
    changes: dict[date, int] = {week: starts for week, starts, _made in weeks}
    # Ranges begin no earlier than the first week; ends before it belong to empty ranges.
    count = sum(starts for week, starts in changes.items() if week < first)
    series: list[tuple[str, int]] = []
    week = first
    while week <= last:
        count += changes.get(week, 0)
        series.append((week.isoformat(), count))
        week += timedelta(days=7)
    return series


# -- keeping the weeks true on every write -------------------------------------------------------


def _seen(conn: Connection) -> set[str]:
    state = _read_state(conn)
    return state.seen if state is not None else set()


def _touched(session: Session) -> set[str]:
    objects: Iterable[Any] = (*session.new, *session.dirty, *session.deleted)
    return {obj.username for obj in objects if isinstance(obj, Entitlement) and obj.username}


def _before_flush(session: Session, _context: Any, _instances: Any) -> None:
    users = _touched(session)
    if not users:
        return
    conn = session.connection()
    state = _read_state(conn)
    # Never computed, or already behind a write that bypassed the hooks: the next view
    # computes it from every row, and keeping it now would hide that it is behind.
    if state is None or state.stamp != _stamp(conn):
        return
    excluded = state.excluded
    # Replaced, not appended: a flush that failed left nothing to apply.
    session.info[_PENDING] = (users, excluded, contributions(_rows_of(conn, users), excluded))


def _after_flush(session: Session, _context: Any) -> None:
    pending = session.info.pop(_PENDING, None)
    if pending is None:
        return
    users, excluded, before = pending
    conn = session.connection()
    rows = list(_rows_of(conn, users))
    delta: dict[date, list[int]] = defaultdict(lambda: [0, 0])
    for week, (starts, made) in contributions(rows, excluded).items():
        delta[week][0] += starts
        delta[week][1] += made
    for week, (starts, made) in before.items():
        delta[week][0] -= starts
        delta[week][1] -= made
    _add(conn, delta)
    named = {row.course_id for row in rows if row.course_id is not None}
    # The stamp follows this write (and the course ids it named), so a view trusts the weeks.
    _write_state(conn, excluded, _seen(conn) | named)


def install(sessions: sessionmaker[Session]) -> None:
    """Keep the weeks true on every flush of ``sessions`` (:class:`hub.store.Database` calls
    this for its session factory)."""
    event.listen(sessions, "before_flush", _before_flush)
    event.listen(sessions, "after_flush", _after_flush)
