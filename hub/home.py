"""The member home page (`/hub/home`): which courses a member may open, and the others.

JupyterHub renders `hub/templates/home.html` with the `template_vars` made here; the hub config
only hands :func:`home_courses` to `JupyterHub.template_vars`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from hub.addresses import service_prefix
from hub.courses import Catalog, deadline_label
from hub.errors import CourseError
from hub.settings import Settings

#: Why access ended, as the member home says it (entitlement ``status_reason`` -> words).
ENDED_REASONS = {
    "refunded": "refunded",
    "dispute_lost": "payment disputed",
    "dispute_open": "payment disputed",
    "canceled": "membership cancelled",
    "payment_failed": "payment failed",
}


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
                reasons[row.course_id] = ENDED_REASONS.get(row.status_reason or "", "access ended")
            else:
                live.add(row.course_id)
    return {course: reason for course, reason in reasons.items() if course not in live}


def home_courses(settings: Settings) -> Callable[[Any], dict[str, Any]]:
    """A `template_vars` callable: the courses the current user may open, and the others.

    Also says which courses' access ended (refund, dispute, cancellation) from LearnHub's
    database, each course's deadlines from `course.yaml`, and where the catalog is. A database
    problem only hides the "access ended" notes; it never breaks the page.
    """
    courses_dir = settings.courses_dir.resolve()
    catalog_url = service_prefix(settings)
    state: dict[str, Any] = {}

    from hub.progress import course_progress
    from hub.reviews import announcements

    def learnhub_db() -> Any:
        # One engine for the hub process, made on first use (never at import or config load).
        if "db" not in state:
            from hub.store import Database

            state["db"] = Database(settings.learnhub_db_url)
        return state["db"]

    def for_user(user: Any) -> dict[str, Any]:
        empty = {"mine": [], "others": [], "ended": [], "error": "", "catalog_url": catalog_url}
        if user is None:
            return empty
        try:
            catalog = Catalog.load(courses_dir)
        except CourseError:
            # The operator sees the details in `learnhub check`; members get a calm message.
            return {**empty, "error": "The catalog is being updated."}
        try:
            ended = ended_courses(learnhub_db(), user.name)
        except Exception:  # the home page must render even if LearnHub's database is down
            logging.getLogger("learnhub.home").exception("could not read entitlements")
            ended = {}
        groups = {group.name for group in user.groups}
        mine: list[dict[str, Any]] = []
        others: list[dict[str, Any]] = []
        ended_items: list[dict[str, Any]] = []
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
                "price": f"{course.price.amount / 100:.2f} {course.price.currency.upper()}",
                "deadlines": [
                    {"title": a.title, "due": deadline_label(a.due), "iso": a.due.isoformat()}
                    for a in course.assignments
                    if a.due is not None
                ],
                "ended": ended.get(course.id, ""),
            }
            if role:
                try:
                    item["progress"] = course_progress(learnhub_db(), course, user.name)
                    latest = announcements(learnhub_db(), course.id, limit=1)
                    item["announcement"] = latest[0] if latest else None
                except Exception:  # progress is a nicety; the page renders without it
                    logging.getLogger("learnhub.home").exception("could not read progress")
                    item["progress"] = []
                    item["announcement"] = None
                mine.append(item)
            elif course.id in ended:
                ended_items.append(item)
            else:
                others.append(item)
        return {
            "mine": mine,
            "others": others,
            "ended": ended_items,
            "error": "",
            "catalog_url": catalog_url,
        }

    return for_user
