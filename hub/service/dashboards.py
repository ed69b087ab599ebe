"""Instructor and operator dashboards: numbers and SVG plots from real data only.

What has no data yet (grades before any autograding, cost without a configured rate, ratings
before reviews exist) is shown as missing, never estimated. Grades come from the courses' nbgrader
gradebooks, container-hours from the usage sampler (hub/usage.py).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode, urlparse

from grader.reports import course_grades, export_text
from hub import qa
from hub.access.policy import Member
from hub.access.status import EntitlementStatus
from hub.certificates import course_certificates, evaluate
from hub.courses import CourseEntry
from hub.entitlements import entitled_courses, plan_courses
from hub.errors import HubAPIError
from hub.grading_jobs import EXPORT_FORMATS
from hub.i18n import translator
from hub.i18n.dates import format_datetime, iso
from hub.i18n.money import major_units
from hub.reviews import (
    ReviewRejected,
    announcements,
    edit_announcement,
    post_announcement,
    rating_summary,
)
from hub.service import charts
from hub.service.base import LearnerPage, route
from hub.service.dashboard_data import read_operator_data
from hub.service.grading import jobs_panel
from hub.service.reports import (
    ACTIVITY_WINDOW,
    enrolment_over_time,
    money,
    recently_active_names,
    revenue_from_payments,
    status_counts,
)
from hub.store import Database, Entitlement, Payment, utcnow
from hub.store import repository as repo
from hub.subdomains import learnhub_subdomain_hook

log = logging.getLogger("learnhub.service")


@dataclass(frozen=True)
class BillingData:
    """The rows of one course the instructor dashboard reads, in one transaction."""

    entitlements: list[Entitlement]
    payments: list[Payment]


def _read_course(db_sessions: Any, course_id: str, plan_ids: list[str]) -> BillingData:
    """One course's rows only (indexed by course and plan, migration 0019): reading every
    member's took 0.36 s p50 at 1,000 members and grew with them (benchmarks/scale.py)."""
    with db_sessions() as session:
        ents = list(repo.course_entitlements(session, course_id, plan_ids))
        return BillingData(ents, list(repo.course_payments(session, course_id)))


def _format_revenue(amounts: dict[str, int], lang: str) -> str:
    texts = [money(v, c, lang) for c, v in sorted(amounts.items())]
    return ", ".join(texts) or money(0, "usd", lang)


def completion_view(
    db: Database, entry: CourseEntry, rows: list[dict[str, Any]], prefix: str
) -> dict[str, Any] | None:
    """Who passes the course's ``completion:`` rule, per learner, with their certificate link
    (blocking); None when the course has no rule."""
    course = entry.course
    if course.completion is None:
        return None
    certificates = course_certificates(db, course.id)
    learners = [
        {
            "learner": result.learner,
            "percents": [f"{result.percents[a]:.0f} %" for a in course.counted_assignments()],
            "total": f"{result.total_percent:.0f} %",
            "passed": result.passed,
            "certificate_url": (
                f"{prefix}certificates/{certificates[result.learner]}"
                if result.learner in certificates
                else ""
            ),
        }
        for result in evaluate(course, rows)
    ]
    return {
        "rule": course.completion,
        "assignments": course.counted_assignments(),
        "learners": learners,
        "passed": sum(1 for item in learners if item["passed"]),
        "certified": len(certificates),
    }


def formgrader_url(subdomain_host: str, hub_base: str, user: str, course_id: str) -> str:
    """The formgrader in ``user``'s own server of the course, started on the way if stopped.

    JupyterHub's ``user-redirect/<course>/formgrader`` does not reach it: the Hub reads
    ``<course>`` as a path of the default server and offers to spawn that, which LearnHub
    refuses. The course's spawn URL starts the right server (or goes straight on when it runs)
    and then follows ``next``: the formgrader on the server's own origin.
    """
    path = f"{hub_base}user/{quote(user, safe='')}/{course_id}/formgrader"
    if subdomain_host:
        parsed = urlparse(subdomain_host)
        host = learnhub_subdomain_hook(user, parsed.hostname or "localhost", "user")
        port = f":{parsed.port}" if parsed.port else ""
        path = f"{parsed.scheme}://{host}{port}{path}"
    return f"{hub_base}hub/spawn/{quote(user, safe='')}/{course_id}?{urlencode({'next': path})}"


#: Courses per page of the operator dashboard's per-course charts and tables: 200 bars in one
#: 640-pixel chart are 3 pixels each, and unreadable.
COURSES_PER_PAGE = 20


def course_page(course_ids: list[str], requested: str) -> tuple[int, int, list[str]]:
    """(page, number of pages, the course ids on it) for a ``?page=`` value; a value that is
    not a page number shows the first page, one past the end the last."""
    pages = max(1, -(-len(course_ids) // COURSES_PER_PAGE))
    page = int(requested) if requested.isdigit() else 1
    page = min(max(page, 1), pages)
    start = (page - 1) * COURSES_PER_PAGE
    return page, pages, course_ids[start : start + COURSES_PER_PAGE]


def pager(page: int, pages: int, total: int, url: str) -> dict[str, Any] | None:
    """What the page's course pager shows (None when every course fits on one page)."""
    if pages <= 1:
        return None
    first = (page - 1) * COURSES_PER_PAGE + 1
    return {
        "first": first,
        "last": min(total, first + COURSES_PER_PAGE - 1),
        "total": total,
        "previous": f"{url}?page={page - 1}" if page > 1 else None,
        "next": f"{url}?page={page + 1}" if page < pages else None,
    }


class InstructorPage(LearnerPage):
    """A page of one course for its instructors and hub admins only."""

    def instructor_course(self, course_id: str) -> tuple[Member, CourseEntry] | None:
        """The viewer and the course, or None after answering (login, 404 or 403)."""
        if self.require_learner() is None:
            return None
        viewer = self.viewer()
        entry = self.course_or_404(course_id)
        if entry is None:
            return None
        if viewer is None or not viewer.administers(course_id):
            self.show_message(
                403, "forbidden", "forbidden_title", "forbidden_instructor", alert="warning"
            )
            return None
        return viewer, entry


class InstructorDashboard(InstructorPage):
    """``GET {prefix}instructor/<course>``: the course's instructors and hub admins only."""

    async def get(self, course_id: str) -> None:
        """Enrolment over time, active vs ended access, revenue, deadlines."""
        found = self.instructor_course(course_id)
        if found is None:
            return
        viewer, entry = found
        _ = translator(self.lang)
        plans = self.ctx.settings.payments.plans
        plan_ids = [p.id for p in plans if course_id in plan_courses(p, self.ctx.catalog)]
        data = await asyncio.to_thread(_read_course, self.ctx.db.transaction, course_id, plan_ids)
        ents = [
            e
            for e in data.entitlements
            if course_id in entitled_courses(e, self.ctx.catalog, plans)
        ]
        enrolment = enrolment_over_time(ents, {course_id}, now=utcnow())
        counts = status_counts(ents)
        status_rows = [
            (_("active"), counts[EntitlementStatus.ACTIVE] + counts[EntitlementStatus.PAST_DUE]),
            (_("pending"), counts[EntitlementStatus.PENDING]),
            (_("revoked"), counts[EntitlementStatus.REVOKED]),
        ]
        revenue = revenue_from_payments(data.payments).by_course.get(course_id, {})
        grades = await asyncio.to_thread(course_grades, self.ctx.settings, entry)
        notices = await asyncio.to_thread(announcements, self.ctx.db, course_id)
        panel = await jobs_panel(self, entry)
        reported = await asyncio.to_thread(qa.moderation_queue, self.ctx.db, [course_id])
        logged = await asyncio.to_thread(qa.moderation_log, self.ctx.db, [course_id])

        completion = await asyncio.to_thread(
            completion_view, self.ctx.db, entry, grades.rows, self.ctx.prefix
        )
        submission_rows = [(a, n) for a, n in grades.submissions.items()]
        score_rows = list(grades.buckets.items())
        self.render_page(
            200,
            "instructor.html",
            viewer=viewer,
            title=f"{_('instructor_dashboard')}: {entry.course.title}",
            course=entry.course,
            enrolment=enrolment,
            enrolment_svg=charts.step_chart(_("enrolled_learners"), enrolment),
            status_rows=status_rows,
            status_svg=charts.bar_chart(
                _("active_vs_revoked"),
                [label for label, _v in status_rows],
                [value for _l, value in status_rows],
            ),
            revenue=_format_revenue(revenue, self.lang),
            grades=grades,
            notices=notices,
            moderation_items=reported,
            moderation_actions=logged,
            announce_url=f"{self.ctx.prefix}instructor/{course_id}/announce",
            announcements_url=f"{self.ctx.prefix}instructor/{course_id}/announcements",
            submission_rows=submission_rows,
            submissions_svg=charts.bar_chart(
                _("submissions"), [a for a, _n in submission_rows], [n for _a, n in submission_rows]
            ),
            score_rows=score_rows,
            scores_svg=charts.bar_chart(
                _("scores"), [b for b, _n in score_rows], [n for _b, n in score_rows], unit=""
            ),
            grades_csv_url=f"{self.ctx.prefix}instructor/{course_id}/grades.csv",
            export_formats=EXPORT_FORMATS,
            completion=completion,
            formgrader_url=formgrader_url(
                self.ctx.settings.subdomain_host, self.ctx.hub_base, viewer.name, course_id
            ),
            assignments=[
                {
                    "title": a.title,
                    "due": format_datetime(a.due, self.lang, self.time_zone) if a.due else None,
                    "due_iso": iso(a.due),
                }
                for a in entry.course.assignments
            ],
            **panel,
        )


class AnnounceHandler(InstructorPage):
    """``POST {prefix}instructor/<course>/announce``: an instructor posts to the course;
    ``POST {prefix}instructor/<course>/announcements/<n>``: one of its instructors (or an
    admin) corrects an announcement (:func:`hub.reviews.edit_announcement`, no new mail)."""

    async def post(self, course_id: str, announcement_id: str | None = None) -> None:
        """Post or correct the announcement, then show the dashboard again."""
        found = self.instructor_course(course_id)
        if found is None:
            return
        viewer, _entry = found
        text = self.get_body_argument("text", "")
        try:
            if announcement_id is None:
                await asyncio.to_thread(
                    post_announcement, self.ctx.db, course_id, viewer.name, text
                )
                outcome = "posted"
            else:
                found_it = await asyncio.to_thread(
                    edit_announcement,
                    self.ctx.db,
                    course_id,
                    int(announcement_id),
                    viewer.name,
                    text,
                )
                outcome = "edited" if found_it else "not-found"
        except ReviewRejected as exc:
            self.show_message(
                400, "invalid", "announcement_invalid_title", "review_invalid", reason=str(exc)
            )
            return
        log.info(
            f"announcement {outcome}",
            extra={"user": viewer.name, "course": course_id, "outcome": outcome},
        )
        if outcome == "not-found":
            self.show_message(404, "not-found", "not_found_title", "qa_no_announcement")
            return
        self.redirect(f"{self.ctx.prefix}instructor/{course_id}#announcements", status=303)


class GradesCSV(InstructorPage):
    """``GET {prefix}instructor/<course>/grades.csv``: the course's grades, for its instructors."""

    async def get(self, course_id: str) -> None:
        """The grades export as a CSV download."""
        found = self.instructor_course(course_id)
        if found is None:
            return
        _viewer, entry = found
        exporter = self.get_query_argument("exporter", EXPORT_FORMATS[0])
        if exporter not in EXPORT_FORMATS:
            self.show_message(
                400, "invalid", "job_refused_title", "job_bad_exporter",
                alert="warning", exporter=exporter[:32], formats=", ".join(EXPORT_FORMATS),
            )  # fmt: skip
            return
        text = await asyncio.to_thread(export_text, self.ctx.settings, entry, exporter)
        suffix = "" if exporter == EXPORT_FORMATS[0] else f"-{exporter}"
        self.set_header("Content-Type", "text/csv; charset=utf-8")
        self.set_header("Cache-Control", "private, no-store")
        self.set_header(
            "Content-Disposition", f'attachment; filename="{course_id}-grades{suffix}.csv"'
        )
        self.finish(text)


class OperatorDashboard(LearnerPage):
    """``GET {prefix}admin``: hub admins only. N, A, R, C, P = R - C, Q, U."""

    async def get(self) -> None:
        """The community model's figures and plots."""
        if self.require_learner() is None:
            return
        viewer = self.viewer()
        if viewer is None or not viewer.admin:
            self.show_message(
                403, "forbidden", "forbidden_title", "forbidden_admin", alert="warning"
            )
            return
        _ = translator(self.lang)
        now = utcnow()
        settings = self.ctx.settings
        # The usage sample first: the container-hours read below then include it.
        await self.refresh_usage()
        course_ids = self.ctx.catalog.ids()
        page, pages, shown = course_page(course_ids, self.get_query_argument("page", "1"))
        active_users = await self.recently_active(now)
        data = await asyncio.to_thread(
            read_operator_data,
            self.ctx.db,
            self.ctx.catalog,
            settings.payments.plans,
            now=now,
            grace=timedelta(days=settings.payments.grace_period_days),
            course_ids=shown,
            active_users=active_users,
        )
        activity = None
        if data.active_members is not None:
            activity = data.active_members / data.members if data.members else 0.0
        revenue = data.revenue
        per_course = data.per_course
        currency = settings.payments.plans[0].currency if settings.payments.plans else "usd"
        currency = next(iter(revenue.net), currency)
        revenue_minor = [revenue.by_course.get(c, {}).get(currency, 0) for c in shown]
        revenue_values = [float(major_units(v, currency)) for v in revenue_minor]
        enrolment = data.enrolment
        quality = await asyncio.to_thread(
            self.ctx.grade_figures.average, settings, list(self.ctx.catalog)
        )
        rating, reviews = await asyncio.to_thread(rating_summary, self.ctx.db)
        total_hours = sum(data.hours.values())
        rate = settings.payments.container_hour_cost
        cost = round(total_hours * rate) if rate else None
        net = revenue.net.get(currency, 0)
        cost_text = money(cost, currency, self.lang) if cost is not None else None
        profit_text = money(net - cost, currency, self.lang) if cost is not None else None
        metrics = [
            {
                "key": "N",
                "label": _("metric_members"),
                "value": str(data.members),
                "note": _("members_note"),
                "missing": False,
            },
            {
                "key": "A",
                "label": _("metric_activity"),
                "value": f"{activity:.0%}" if activity is not None else _("activity_unavailable"),
                "note": "",
                "missing": activity is None,
            },
            {
                "key": "R",
                "label": _("metric_revenue"),
                "value": _format_revenue(revenue.net, self.lang),
                "note": "",
                "missing": False,
            },
            {
                "key": "H",
                "label": _("metric_container_hours"),
                "value": f"{total_hours:.2f} h",
                "note": _("container_hours_note"),
                "missing": False,
            },
            # Without a configured rate the cost (and with it P) is shown as missing, never guessed.
            {
                "key": "C",
                "label": _("metric_cost"),
                "value": cost_text or _("cost_rate_missing"),
                "note": "",
                "missing": cost is None,
            },
            {
                "key": "P",
                "label": _("metric_profit"),
                "value": profit_text or _("missing_cost"),
                "note": "",
                "missing": cost is None,
            },
            {
                "key": "Q",
                "label": _("metric_quality"),
                "value": f"{quality:.1f} %" if quality is not None else _("missing_grades"),
                "note": _("quality_note") if quality is not None else "",
                "missing": quality is None,
            },
            {
                "key": "U",
                "label": _("metric_satisfaction"),
                "value": f"{rating:.1f} / 5 ({reviews})"
                if rating is not None
                else _("missing_reviews"),
                "note": _("satisfaction_note") if rating is not None else "",
                "missing": rating is None,
            },
        ]
        revenue_rows = [
            (c, money(v, currency, self.lang)) for c, v in zip(shown, revenue_minor, strict=True)
        ]
        members_rows = [(c, per_course.get(c, 0)) for c in shown]
        reported = await asyncio.to_thread(qa.moderation_queue, self.ctx.db, course_ids)
        logged = await asyncio.to_thread(qa.moderation_log, self.ctx.db, course_ids)
        self.render_page(
            200,
            "admin.html",
            viewer=viewer,
            title=_("admin_title"),
            metrics=metrics,
            revenue_rows=revenue_rows,
            revenue_svg=charts.bar_chart(
                _("revenue_by_course"), shown, revenue_values, unit=f" {currency.upper()}"
            ),
            members_rows=members_rows,
            members_svg=charts.bar_chart(
                _("members_by_course"), shown, [per_course.get(c, 0) for c in shown]
            ),
            course_pager=pager(page, pages, len(course_ids), f"{self.ctx.prefix}admin"),
            enrolment=enrolment,
            enrolment_svg=charts.step_chart(_("enrolled_learners"), enrolment),
            moderation_items=reported,
            moderation_actions=logged,
        )

    async def refresh_usage(self) -> None:
        """Make container-hours include the servers running right now (a new usage sample
        when the last one may have missed one: :class:`hub.service.hub_figures.HubFigures`)."""
        client = self.ctx.hub_client
        if client is None:
            return
        try:
            await self.ctx.hub_figures.usage_current(
                client, self.ctx.db, set(self.ctx.catalog.ids())
            )
        except HubAPIError as exc:
            log.warning("usage sample failed", extra={"error": str(exc)})

    async def recently_active(self, now: datetime) -> set[str] | None:
        """Who was active in the last 7 days, or None when the Hub cannot tell (the Hub's
        answer is reused for a few minutes: :class:`hub.service.hub_figures.HubFigures`); the
        database counts which of them are members (A)."""
        client = self.ctx.hub_client
        if client is None:
            return None
        since = now - ACTIVITY_WINDOW
        try:
            users = await self.ctx.hub_figures.recently_active(client, since)
        except HubAPIError as exc:
            log.warning("activity unavailable", extra={"error": str(exc)})
            return None
        return recently_active_names(users, since)


def dashboard_routes(prefix: str) -> list[Any]:
    """Routes of the dashboards."""
    return [
        (route(prefix, "instructor/([a-z0-9-]+)"), InstructorDashboard),
        (route(prefix, "instructor/([a-z0-9-]+)/grades.csv"), GradesCSV),
        (route(prefix, "instructor/([a-z0-9-]+)/announce"), AnnounceHandler),
        (route(prefix, "instructor/([a-z0-9-]+)/announcements/([0-9]+)"), AnnounceHandler),
        (route(prefix, "admin"), OperatorDashboard),
    ]
