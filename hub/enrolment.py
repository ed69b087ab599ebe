"""Enrolling a class: grant or revoke one course for many members at once.

A roster is a pasted list or an uploaded CSV, one member a line: ``username`` or
``username,email`` (a header line and ``#`` comments are allowed). :func:`parse_roster` checks
every line and keeps the good ones; :func:`change_enrolment` then, in one process:

1. looks the names up in the Hub concurrently (a grant needs an account; the Hub's 400 on an
   unknown name would refuse the whole group request),
2. writes every grant or revocation in **one** database transaction (the entitlement is the
   truth, as for a payment),
3. applies the course's desired membership with one Hub call per change
   (:func:`hub.access.hub_groups.apply_membership`: one POST adds the whole class),

and reports what changed per member, with a message key per bad line, so a bad row never loses
the good ones. ``learnhub grant COURSE --csv FILE`` (the operator) and the instructor dashboard
(`instructor/<course>/enrolment`, the course's instructors and admins) both call it.

Why batched: one ``learnhub grant`` process costs about 1.4 s (1.2 CPU-s, mostly Python start-up
and imports), so a class of 200 took about five minutes one name at a time
(benchmarks/enrolment.py has the figures).
"""

from __future__ import annotations

import asyncio
import csv
import re
import unicodedata
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING
from urllib.parse import quote

from hub.access.hub_groups import HubClient, apply_membership, load_desired_membership
from hub.access.status import EntitlementReason
from hub.courses import Catalog, learner_group
from hub.errors import LearnHubError
from hub.i18n import Translator
from hub.settings import Settings
from hub.usernames import normalize_username

if TYPE_CHECKING:
    from hub.store import Database

#: Most members one roster may hold; a longer file is refused whole, with this number.
MAX_ROSTER_LINES = 5000
#: Largest roster accepted (a CSV of 5,000 members with e-mail addresses is about 200 KB).
MAX_ROSTER_BYTES = 1024 * 1024
#: Longest username the Hub's own database keeps.
MAX_USERNAME_LENGTH = 255
#: Hub look-ups in flight at once: enough to hide each round trip, few enough that the Hub's
#: single event loop keeps serving pages meanwhile.
LOOKUP_CONCURRENCY = 16
#: Seconds one Hub call of an enrolment may take (the usual 10 s gave up on a Hub at load 50).
HUB_TIMEOUT_SECONDS = 60.0
#: First fields of a header line (skipped).
HEADER_NAMES = frozenset({"username", "user", "login", "name", "用户名"})
#: Second fields of a header line.
EMAIL_HEADERS = frozenset({"email", "e-mail", "mail", "邮箱"})
#: An e-mail address as far as a roster needs: something@domain.tld, no spaces.
_EMAIL = re.compile(r"^[^@\s,]+@[^@\s,]+\.[^@\s,]+$")


class Action(StrEnum):
    """What a roster asks for."""

    GRANT = "grant"
    REVOKE = "revoke"


class Actor(StrEnum):
    """Who asks: an operator (CLI, admin) may withdraw purchases, an instructor only grants."""

    OPERATOR = "operator"
    INSTRUCTOR = "instructor"


@dataclass(frozen=True)
class RosterLine:
    """One good line: the member's name (as the Hub spells names) and the e-mail given."""

    line: int
    username: str
    email: str = ""


@dataclass(frozen=True)
class LineError:
    """A line that was left out, why (a message key and its values) and its text."""

    line: int
    text: str
    key: str
    values: dict[str, str | int] = field(default_factory=dict)

    def message(self, _: Translator) -> str:
        """``line 3 (bob smith): ...`` in the translator's language."""
        return _(
            "enrol_line_error", line=self.line, text=self.text, reason=_(self.key, **self.values)
        )


class RosterRefused(LearnHubError):
    """The roster as a whole cannot be used (too long, too large, empty); carries a key."""

    def __init__(self, key: str, **values: str | int) -> None:
        self.key = key
        self.values = values
        super().__init__(key)

    def message(self, _: Translator) -> str:
        """The reason in the translator's language."""
        return _(self.key, **self.values)


def _shown(text: str) -> str:
    """A line as an error message quotes it: one line, at most 60 characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= 60 else flat[:57] + "..."


def _username_problem(name: str) -> str | None:
    """The message key of what is wrong with a roster's username, or None."""
    if not name:
        return "enrol_missing_username"
    if len(name) > MAX_USERNAME_LENGTH:
        return "enrol_bad_username"
    for char in name:
        if char.isspace() or char == "/" or unicodedata.category(char).startswith("C"):
            return "enrol_bad_username"
    return None


def parse_roster(text: str) -> tuple[list[RosterLine], list[LineError]]:
    """The good lines of a roster and an error for each bad one.

    One member a line, ``username`` or ``username,email`` (CSV quoting allowed). Blank lines,
    ``#`` comments and header lines (``username,email``) are skipped. A name
    listed twice is kept once (the repeat is reported). Raises :class:`RosterRefused` for a
    roster with more than :data:`MAX_ROSTER_LINES` members or none at all.
    """
    if len(text.encode("utf-8", "replace")) > MAX_ROSTER_BYTES:
        raise RosterRefused("enrol_too_large", limit=MAX_ROSTER_BYTES // 1024)
    good: list[RosterLine] = []
    errors: list[LineError] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip().lstrip("\ufeff")
        if not stripped or stripped.startswith("#"):
            continue
        try:
            fields = [f.strip() for f in next(csv.reader([stripped], skipinitialspace=True))]
        except csv.Error:
            errors.append(LineError(number, _shown(raw), "enrol_malformed"))
            continue
        while fields and not fields[-1]:
            fields.pop()  # a trailing comma (spreadsheets write them)
        if fields and {f.lower() for f in fields} <= HEADER_NAMES | EMAIL_HEADERS:
            continue  # a header line (also where a pasted list and a file meet)
        if len(fields) > 2 or not fields:
            errors.append(LineError(number, _shown(raw), "enrol_malformed"))
            continue
        name = normalize_username(fields[0])
        problem = _username_problem(name)
        if problem is not None:
            errors.append(LineError(number, _shown(raw), problem))
            continue
        email = fields[1] if len(fields) == 2 else ""
        if email and not _EMAIL.match(email):
            errors.append(LineError(number, _shown(raw), "enrol_bad_email"))
            continue
        if name in seen:
            errors.append(LineError(number, _shown(raw), "enrol_duplicate", {"first": seen[name]}))
            continue
        seen[name] = number
        good.append(RosterLine(number, name, email))
        if len(good) > MAX_ROSTER_LINES:
            raise RosterRefused("enrol_too_many", limit=MAX_ROSTER_LINES)
    if not good and not errors:
        raise RosterRefused("enrol_empty")
    return good, errors


def roster_from_names(names: list[str]) -> tuple[list[RosterLine], list[LineError]]:
    """The CLI's names (``learnhub grant COURSE alice bob``) as a roster, one per line."""
    return parse_roster("\n".join(name.replace(",", " ") for name in names))


@dataclass
class EnrolmentReport:
    """What a roster changed, member by member."""

    action: Action
    course_id: str
    actor: Actor = Actor.OPERATOR
    #: Granted: can open the course now; revoked: can no longer open it.
    changed: list[str] = field(default_factory=list)
    #: Granted: could open it already; revoked: had no access.
    unchanged: list[str] = field(default_factory=list)
    #: Revoked, yet still in the course through what the revoker may not end (a plan; for an
    #: instructor also a purchase).
    still_in: list[str] = field(default_factory=list)
    errors: list[LineError] = field(default_factory=list)

    def summary(self, _: Translator) -> str:
        """One sentence: the counts."""
        return _(
            f"enrol_summary_{self.action.value}",
            course=self.course_id,
            changed=len(self.changed),
            unchanged=len(self.unchanged),
            still_in=len(self.still_in),
            errors=len(self.errors),
        )

    def lines(self, _: Translator) -> list[str]:
        """The summary, then who is in each outcome, then each bad line."""
        out = [self.summary(_)]
        for key, names in (
            (f"enrol_changed_{self.action.value}", self.changed),
            (f"enrol_unchanged_{self.action.value}", self.unchanged),
            (f"enrol_still_in_{self.actor.value}", self.still_in),
        ):
            if names:
                out.append(_(key, names=", ".join(names), course=self.course_id))
        out.extend(error.message(_) for error in self.errors)
        return out


async def unknown_users(hub: HubClient, names: list[str]) -> set[str]:
    """The names the Hub has no account for, looked up :data:`LOOKUP_CONCURRENCY` at a time.

    One ``GET /users/<name>`` each (the scope ``read:users``, which the operator's membership
    commands need anyway), rather than listing every user: a class is small, the Hub large.
    """
    gate = asyncio.Semaphore(LOOKUP_CONCURRENCY)

    async def missing(name: str) -> bool:
        async with gate:
            return await hub.user(name) is None

    found = await asyncio.gather(*(missing(name) for name in names))
    return {name for name, gone in zip(names, found, strict=True) if gone}


def _record(
    db: Database,
    course_id: str,
    names: list[str],
    action: Action,
    actor: Actor,
    by: str,
) -> None:
    """Every grant or revocation of the roster, in one transaction (blocking)."""
    from hub.store import repository as repo

    with db.transaction() as session:
        for name in names:
            if action is Action.GRANT:
                repo.set_manual_access(
                    session, name, course_id, active=True, reason=f"granted by {by}"[:64]
                )
            elif actor is Actor.OPERATOR:
                repo.revoke_course(
                    session, name, course_id, reason=EntitlementReason.OPERATOR_REVOKED
                )
            else:
                # An instructor takes back what was granted by hand; a purchase is the
                # operator's (a refund), so it stays.
                repo.set_manual_access(
                    session, name, course_id, active=False, reason=f"revoked by {by}"[:64]
                )


async def group_members(hub: HubClient, group: str) -> set[str]:
    """The members of one Hub group (one request; an absent group has none)."""
    response = await hub.request("GET", f"/groups/{quote(group, safe='')}", ok=(200, 404))
    return set() if response.status_code == 404 else set(response.json().get("users") or [])


async def change_enrolment(
    db: Database,
    catalog: Catalog,
    settings: Settings,
    hub: HubClient,
    course_id: str,
    roster: list[RosterLine],
    *,
    action: Action,
    actor: Actor,
    by: str,
    errors: list[LineError] | None = None,
    sync: Callable[[], Awaitable[None]] | None = None,
) -> EnrolmentReport:
    """Grant or revoke ``course_id`` for every member of ``roster``; report per member.

    ``errors`` are the roster's bad lines (carried into the report). ``by`` names who asked
    (kept as the entitlement's reason). A grant skips names the Hub does not know (one error
    line each); the rest are written in one transaction, then the course's group is made to
    match: by ``sync`` (the service's coalesced access sync, so two syncs never interleave),
    else directly. Raises :class:`hub.errors.HubAPIError` when the Hub cannot be reached
    (what was written is applied by the next sync).
    """
    if course_id not in catalog:
        known = ", ".join(catalog.ids()) or "none"
        raise LearnHubError(f"no such course {course_id!r} (known: {known})")
    report = EnrolmentReport(action, course_id, actor, errors=list(errors or []))
    names = [line.username for line in roster]
    if action is Action.GRANT and names:
        unknown = await unknown_users(hub, names)
        for line in roster:
            if line.username in unknown:
                report.errors.append(
                    LineError(
                        line.line, line.username, "enrol_unknown_user", {"user": line.username}
                    )
                )
        names = [name for name in names if name not in unknown]
    report.errors.sort(key=lambda error: error.line)
    if not names:
        return report
    group = learner_group(course_id)
    before = await group_members(hub, group)
    await asyncio.to_thread(_record, db, course_id, names, action, actor, by)
    desired = await asyncio.to_thread(load_desired_membership, db, catalog, settings)
    wanted = desired.get(group, set())
    if sync is not None:
        await sync()
    else:
        await apply_membership(hub, {group: wanted})
    for name in names:
        if action is Action.GRANT:
            (report.unchanged if name in before else report.changed).append(name)
        elif name in wanted:
            report.still_in.append(name)
        elif name in before:
            report.changed.append(name)
        else:
            report.unchanged.append(name)
    return report
