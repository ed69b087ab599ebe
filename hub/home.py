"""The front door (`/`) and the member home page (`/hub/home`).

`/` sends visitors to the catalog and members to their home (:func:`front_door`, JupyterHub's
`default_url`, also where a login without `next` lands). JupyterHub renders
`hub/templates/home.html` with the `template_vars` made here; the hub config only hands
:func:`home_courses` to `JupyterHub.template_vars`. JupyterHub evaluates those for every page it
renders, so the home page's data is read only when `home.html` uses it (:class:`HomePage`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from hub.addresses import service_prefix
from hub.courses import COURSE_ID_PATTERN, Catalog, CourseEntry, load_course
from hub.errors import CourseError
from hub.i18n.dates import TZ_COOKIE, format_datetime, formatter, iso, normalize_zone, viewer_zone
from hub.i18n.hub_pages import current_cookie, current_language
from hub.i18n.money import format_money
from hub.settings import Settings

log = logging.getLogger("learnhub.home")

#: Why access ended, as the member home says it (entitlement ``status_reason`` -> message key).
ENDED_REASONS = {
    "refunded": "ended_refunded",
    "dispute_lost": "ended_disputed",
    "dispute_open": "ended_disputed",
    "canceled": "ended_canceled",
    "payment_failed": "ended_payment_failed",
}


def front_door(settings: Settings) -> Callable[[Any], str]:
    """`JupyterHub.default_url`: the catalog for visitors, the member home for members.

    JupyterHub calls it with the handler for `/` (its RootHandler) and after a login that
    carries no `next`.
    """
    home = urlparse(settings.hub.bind_url).path + "hub/home"
    catalog = service_prefix(settings)

    def default_url(handler: Any) -> str:
        return home if handler.current_user else catalog

    return default_url


def ended_courses(db: Any, username: str) -> dict[str, str]:
    """Courses whose every direct entitlement of ``username`` was revoked: ``{course: reason}``.

    Blocking, but one indexed query on a WAL database: cheap enough for a page render.
    """
    from hub.store import repository as repo

    reasons: dict[str, str] = {}
    live: set[str] = set()
    with db.transaction() as session:
        for row in repo.entitlements(session, username):
            if row.course_id is None:
                continue
            if row.status == "revoked":
                reason = row.status_reason or ""
                reasons[row.course_id] = ENDED_REASONS.get(reason, "status_revoked")
            else:
                live.add(row.course_id)
    return {course: reason for course, reason in reasons.items() if course not in live}


def catalog_signature(courses_dir: Path) -> tuple[tuple[str, int, int], ...]:
    """What changes when a course is added, removed or its ``course.yaml`` edited: each
    folder's name with the file's modification time and size (0, 0 when it has none)."""
    found = []
    for folder in sorted(courses_dir.iterdir()) if courses_dir.is_dir() else []:
        try:
            info = (folder / "course.yaml").stat()
            found.append((folder.name, info.st_mtime_ns, info.st_size))
        except OSError:
            found.append((folder.name, 0, 0))
    return tuple(found)


class HomePage(Mapping[str, Any]):
    """What `home.html` shows of a member's courses, read when the template first uses it.

    JupyterHub calls every `template_vars` callable for every page it renders for a signed-in
    member (token, spawn, error and mail pages too) and merges the results into each page's
    context. Reading LearnHub's database and every course folder there made each of those
    pages pay for the home page (with the database refused, one error line each; locked, one
    busy timeout each, on the Hub's event loop). Only the home page looks inside this object.
    """

    def __init__(self, read: Callable[[], dict[str, Any]]) -> None:
        self._read = read
        self._values: dict[str, Any] | None = None

    def _page(self) -> dict[str, Any]:
        if self._values is None:
            self._values = self._read()
        return self._values

    def __getitem__(self, key: str) -> Any:
        return self._page()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._page())

    def __len__(self) -> int:
        return len(self._page())


def home_courses(settings: Settings) -> Callable[[Any], HomePage]:
    """A `template_vars` callable: the courses the current user may open, and the others,
    read only when the page uses them (:class:`HomePage`).

    Also says which courses' access ended (refund, dispute, cancellation) from LearnHub's
    database, and each course's assignments from `course.yaml`, one row each with its deadline
    and, for a learner, their progress. A database problem only hides the "access ended" notes
    and the progress; it never breaks the page: a course's server does not need LearnHub's
    database. When the database cannot be used (:data:`hub.store.hub_side.UNAVAILABLE`) the
    page says so and the log has one warning. Reasons are message keys; prices are in the
    page language.
    """
    courses_dir = settings.courses_dir.resolve()
    catalog_url = service_prefix(settings)
    state: dict[str, Any] = {}

    from hub.certificates import learner_certificates
    from hub.pacing import enrolment_times, learner_deadline
    from hub.progress import course_progress
    from hub.reviews import announcements

    def learnhub_db() -> Any:
        # One engine for the hub process, made on first use (never at import or config load).
        # The Hub's kind: never creates the file, refuses a link the service planted there.
        if "db" not in state:
            from hub.store.hub_side import hub_database, service_db_owner

            state["db"] = hub_database(settings.learnhub_db_url, service_db_owner(settings))
        return state["db"]

    def first_read(name: str) -> tuple[dict[str, str], bool]:
        # The page's first read, ``(ended courses, unavailable)``: a database that cannot be
        # used hides all its notes and says so, with one log line, instead of one traceback
        # per read (and, locked, one busy timeout per read, on the Hub's event loop).
        from hub.store.hub_side import UNAVAILABLE, ServiceDatabaseRefused, unavailable_reason

        try:
            return ended_courses(learnhub_db(), name), False
        except ServiceDatabaseRefused:  # logged by the check, with the path and the remedy
            return {}, True
        except UNAVAILABLE as exc:
            log.warning(
                "learnhub records unavailable",
                extra={"user": name, "reason": unavailable_reason(exc), "outcome": "notes-hidden"},
            )
            return {}, True
        except Exception:  # a bug: logged with its traceback; the page renders without notes
            log.exception("could not read entitlements")
            return {}, False

    def time_zone(name: str) -> str:
        # The learnhub-tz cookie the time zone form sets, else the member's saved zone, else UTC.
        cookie = current_cookie(TZ_COOKIE)
        if normalize_zone(cookie):
            return viewer_zone(cookie)
        from hub.preferences import saved_zone

        try:
            return viewer_zone(None, saved_zone(learnhub_db(), name))
        except Exception:  # the home page renders (in UTC) even if the database is down
            log.exception("could not read the time zone")
            return viewer_zone(None)

    def current_catalog() -> Catalog:
        # Parsing and validating every course.yaml on each view ran on the Hub's event loop:
        # 1.1 s p50 for the home page with 200 courses (0.18 s with 20, benchmarks/scale.py).
        # The catalog is read again only when a course folder or course.yaml changed.
        signature = catalog_signature(courses_dir)
        cached = state.get("catalog")
        if cached is None or cached[0] != signature:
            cached = (signature, Catalog.load(courses_dir))
            state["catalog"] = cached
        catalog: Catalog = cached[1]
        return catalog

    def own_deadlines(
        rows: list[dict[str, Any]], entry: CourseEntry, name: str, lang: str, zone: str
    ) -> None:
        # A self-paced course's deadlines are the learner's own: enrolment plus due_after.
        course = entry.course
        if course.pacing != "self-paced":
            return
        with learnhub_db().transaction() as session:
            enrolled = enrolment_times(session, entry, settings.payments.plans, username=name).get(
                name
            )
        for row, assignment in zip(rows, course.assignments, strict=True):
            due = learner_deadline(course, assignment, enrolled)
            if due is not None:
                row["due"], row["iso"] = format_datetime(due, lang, zone), iso(due)

    def for_user(user: Any) -> HomePage:
        return HomePage(lambda: read_page(user))

    def read_page(user: Any) -> dict[str, Any]:
        lang = current_language()
        empty = {
            "mine": [],
            "others": [],
            "ended": [],
            "error": "",
            "catalog_url": catalog_url,
            **formatter(lang, viewer_zone(None)),
        }
        if user is None:
            return empty
        ended, unavailable = first_read(user.name)
        zone = viewer_zone(current_cookie(TZ_COOKIE)) if unavailable else time_zone(user.name)
        try:
            catalog = current_catalog()
        except CourseError:
            # The operator sees the details in `learnhub check`; members get a calm message.
            return {**empty, "error": "catalog_updating"}
        groups = {group.name for group in user.groups}
        mine: list[dict[str, Any]] = []
        others: list[dict[str, Any]] = []
        ended_items: list[dict[str, Any]] = []
        certificates: dict[str, str] | None = None  # read once per page, when needed
        for entry in catalog:
            course = entry.course
            role = (
                "instructor"
                if course.instructor_group in groups
                else "learner"
                if course.learner_group in groups or user.admin
                else None
            )
            item: dict[str, Any] = {
                "id": course.id,
                "title": course.title,
                "summary": course.summary,
                "role": role,
                "price": format_money(course.price.amount, course.price.currency, lang),
                # One row per assignment: its deadline and (below) the learner's progress.
                "assignments": [
                    {
                        "id": a.id,
                        "title": a.title,
                        "due": format_datetime(a.due, lang, zone) if a.due is not None else "",
                        "iso": iso(a.due),
                        "progress": None,
                    }
                    for a in course.assignments
                ],
                "ended": ended.get(course.id, ""),
                "announcement": None,
                "certificate_url": "",
            }
            if role and unavailable:
                mine.append(item)
            elif role:
                try:
                    if role == "learner":
                        own_deadlines(item["assignments"], entry, user.name, lang, zone)
                        if certificates is None:
                            certificates = learner_certificates(learnhub_db(), user.name)
                        cert = certificates.get(course.id)
                        if cert:
                            item["certificate_url"] = f"{catalog_url}certificates/{cert}"
                        progress = course_progress(learnhub_db(), course, user.name)
                        by_id = {p["id"]: p for p in progress}
                        for row in item["assignments"]:
                            row["progress"] = by_id.get(row["id"])
                    latest = announcements(learnhub_db(), course.id, limit=1)
                    item["announcement"] = latest[0] if latest else None
                except Exception:  # progress is a nicety; the page renders without it
                    log.exception("could not read progress")
                mine.append(item)
            elif course.id in ended:
                ended_items.append(item)
            else:
                others.append(item)
        return {
            "mine": mine,
            "others": others,
            "ended": ended_items,
            "error": "records_unavailable" if unavailable else "",
            "catalog_url": catalog_url,
            # Dates in the member's language and zone: when(moment), day(moment), iso(moment).
            **formatter(lang, zone),
        }

    return for_user


def course_titles(settings: Settings) -> Callable[[Any], Callable[[str], str]]:
    """A `template_vars` callable: a function from a course id to the course's title.

    For the pages JupyterHub renders about one course server (starting, not running), which
    know only the server's name, the course id. A name that is no readable course shows as
    itself. Reads that one `course.yaml` per call: these pages are shown once per start.
    """
    courses_dir = settings.courses_dir.resolve()

    def title(course_id: str) -> str:
        if not re.fullmatch(COURSE_ID_PATTERN, course_id or ""):
            return course_id
        try:
            return load_course(courses_dir / course_id).course.title
        except CourseError:
            return course_id

    return lambda user: title
