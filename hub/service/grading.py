"""Grading from the instructor dashboard: queue a job, follow it, download its export.

The service never grades: it runs as the unprivileged service user, without Docker or the
grading folders. After authorising the request by the signed-in instructor's own Hub login
(:meth:`hub.access.policy.Member.administers`; XSRF-checked like every form) it checks the
request against the catalog and the allow-list (:func:`hub.grading_jobs.check_request`) and
inserts a row; `learnhub grader worker` runs it (grader/worker.py).

    POST {prefix}instructor/<course>/jobs                 queue a job (form or JSON answer)
    GET  {prefix}instructor/<course>/jobs                 the course's jobs, as JSON
    GET  {prefix}instructor/<course>/jobs/<id>/grades.csv an export job's CSV
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any

from hub.access.policy import Member
from hub.courses import CourseEntry
from hub.grading_jobs import (
    JobConflict,
    JobRefused,
    check_request,
    course_jobs,
    enqueue,
    job_result,
)
from hub.i18n import Translator, translator
from hub.service.base import LearnerPage, content_security_policy, route

log = logging.getLogger("learnhub.service")


def form_args(kind: str, form: dict[str, str]) -> dict[str, Any]:
    """The job arguments a dashboard form carries (checked afterwards by ``check_request``)."""
    args: dict[str, Any] = {}
    if kind == "release" and form.get("force"):
        args["force"] = True
    if kind == "autograde":
        args["all"] = form.get("scope") == "all"
    if kind == "publish" and form.get("from_course"):
        args["from_course"] = True

    if kind == "export" and form.get("exporter"):
        args["exporter"] = form["exporter"]
    if kind in ("regrade-one", "extend"):
        args["student"] = form.get("student", "").strip()
    if kind == "extend":
        try:
            args["hours"] = float(form.get("hours", ""))
        except ValueError:
            args["hours"] = form.get("hours", "")
    for name, value in form.items():
        # An option the form does not know is passed on, so the allow-list refuses it loudly.
        if name.startswith("arg_"):
            args[name[4:]] = value
    return args


def display_job(job: dict[str, Any], _: Translator, prefix: str) -> dict[str, Any]:
    """A job as the dashboard shows it (translated labels), for the page and its JSON."""
    kind = str(job["kind"])
    label = f"#{job['id']} {_('job_kind_' + kind)} {job['assignment']}"
    args = job.get("args") or {}
    if kind == "autograde":
        label += f" ({_('job_autograde_all') if args.get('all') else _('job_autograde_new')})"
    if kind == "export" and args.get("exporter"):
        label += f" ({_('export_format_' + str(args['exporter']))})"
    if args.get("student"):
        label += f" · {args['student']}"
    progress = job.get("progress") or {}
    summary_doc = progress.get("summary") or {}
    summary = ""
    if isinstance(summary_doc, dict) and str(summary_doc.get("key", "")).startswith("job_"):
        values = {k: v for k, v in summary_doc.items() if k != "key"}
        try:
            summary = _(str(summary_doc["key"]), **values)
        except (KeyError, IndexError):
            summary = ""
    submissions = []
    for learner, entry in sorted((progress.get("submissions") or {}).items()):
        if not isinstance(entry, dict):
            continue
        state = str(entry.get("state", ""))
        score, max_score = entry.get("score"), entry.get("max_score")
        submissions.append(
            {
                "learner": learner,
                "state": state,
                "state_label": _(f"sub_state_{state}") if state in _SUB_STATES else state,
                "score": (
                    f"{score:g}/{max_score:g}"
                    if isinstance(score, int | float) and isinstance(max_score, int | float)
                    else ""
                ),
                "reason": str(entry.get("reason") or ""),
            }
        )
    notes = []
    if job.get("attempts", 0) > 1:
        notes.append(_("job_attempts", attempts=job["attempts"]))
    return {
        "id": job["id"],
        "kind": kind,
        "label": label,
        "state": job["state"],
        "state_label": _("job_state_" + str(job["state"])),
        "requested_by": job["requested_by"],
        "summary": summary,
        "error": job.get("error") if job["state"] in ("failed", "interrupted") else "",
        "notes": notes,
        "submissions": submissions,
        "download_url": (
            f"{prefix}instructor/{job['course']}/jobs/{job['id']}/grades.csv"
            if job["kind"] == "export" and job["state"] == "done" and job.get("has_result")
            else ""
        ),
        "active": job["state"] in ("queued", "running"),
    }


_SUB_STATES = frozenset({"queued", "graded", "limit", "error", "skipped"})


def allow_job_script(handler: LearnerPage, nonce: str) -> None:
    """Let this page run its one inline script (the jobs panel's poller), and only it.

    The service's pages run no script at all (``script-src 'none'``); the dashboard's poller is
    inline with a fresh nonce, and may fetch the service's own JSON (``connect-src 'self'``).
    """
    public_origin = handler.ctx.settings.absolute_url("").rstrip("/")
    policy = content_security_policy(public_origin).replace(
        "script-src 'none'", f"script-src 'nonce-{nonce}'; connect-src 'self'"
    )
    handler.set_header("Content-Security-Policy", policy)


async def jobs_panel(handler: LearnerPage, entry: CourseEntry) -> dict[str, Any]:
    """Template values of the dashboard's grading section (buttons, jobs, poller)."""
    _ = translator(handler.lang)
    prefix = handler.ctx.prefix
    course_id = entry.course.id
    jobs = await asyncio.to_thread(course_jobs, handler.ctx.db, course_id)
    nonce = secrets.token_urlsafe(16)
    allow_job_script(handler, nonce)
    return {
        "jobs_url": f"{prefix}instructor/{course_id}/jobs",
        "jobs": [display_job(job, _, prefix) for job in jobs],
        "job_assignments": [(a.id, a.title) for a in entry.course.assignments],
        "script_nonce": nonce,
    }


class CourseAdminHandler(LearnerPage):
    """Base of the job routes: the signed-in viewer must administer the course."""

    def course_admin(self, course_id: str, *, as_json: bool) -> tuple[Member, CourseEntry] | None:
        """The viewer and the course, or None after answering (login, 404 or 403)."""
        if self.require_learner() is None:
            return None
        viewer = self.viewer()
        entry = self.ctx.catalog.get(course_id)
        if entry is None:
            if as_json:
                self.write_json(404, {"error": self.translate("no_such_course", course=course_id)})
            else:
                self.course_or_404(course_id)
            return None
        if viewer is None or not viewer.administers(course_id):
            log.warning(
                "grading refused",
                extra={"user": self.learner_name(), "course": course_id, "outcome": "forbidden"},
            )
            if as_json:
                self.write_json(403, {"error": self.translate("job_forbidden")})
            else:
                self.show_message(
                    403, "forbidden", "forbidden_title", "job_forbidden", alert="warning"
                )
            return None
        return viewer, entry


class JobsHandler(CourseAdminHandler):
    """Queue a job (POST) and list the course's jobs (GET, JSON)."""

    async def get(self, course_id: str) -> None:
        """The course's latest jobs with their progress, translated, as JSON."""
        if self.course_admin(course_id, as_json=True) is None:
            return
        jobs = await asyncio.to_thread(course_jobs, self.ctx.db, course_id)
        _ = translator(self.lang)
        self.set_header("Cache-Control", "no-store")
        self.write_json(
            200, {"course": course_id, "jobs": [display_job(j, _, self.ctx.prefix) for j in jobs]}
        )

    async def post(self, course_id: str) -> None:
        """Check the request and queue it: 303 to the dashboard (202 JSON), 400, 403 or 409."""
        as_json = self.wants_json()
        found = self.course_admin(course_id, as_json=as_json)
        if found is None:
            return
        viewer, _entry = found
        form = {k: self.get_body_argument(k) for k in self.request.body_arguments if k != "_xsrf"}
        kind = form.pop("kind", "")
        assignment = form.pop("assignment", "")
        fields = {"user": viewer.name, "course": course_id, "kind": kind[:32]}
        try:
            request = check_request(
                self.ctx.catalog, course_id, kind, assignment, form_args(kind, form)
            )
            job = await asyncio.to_thread(enqueue, self.ctx.db, request, viewer.name)
        except JobRefused as exc:
            log.warning("grading job refused", extra={**fields, "reason": exc.key})
            self.answer(as_json, 400, "job_refused_title", exc.key, **exc.values)
            return
        except JobConflict as exc:
            log.info("grading job busy", extra={**fields, "outcome": "conflict"})
            active = exc.active
            self.answer(
                as_json,
                409,
                "job_busy_title",
                "job_busy",
                extra={"active_job": active["id"]},
                course=active["course"],
                job_id=active["id"],
                job_kind=self.translate("job_kind_" + str(active["kind"])),
                assignment=active["assignment"],
                job_state=self.translate("job_state_" + str(active["state"])),
            )
            return
        log.info(
            "grading job queued",
            extra={**fields, "job": job["id"], "assignment": assignment, "outcome": "queued"},
        )
        if as_json:
            _ = translator(self.lang)
            self.write_json(202, {"job": display_job(job, _, self.ctx.prefix)})
            return
        self.redirect(f"{self.ctx.prefix}instructor/{course_id}#learnhub-jobs", status=303)

    def answer(
        self,
        as_json: bool,
        status: int,
        title_key: str,
        body_key: str,
        *,
        extra: dict[str, Any] | None = None,
        **values: Any,
    ) -> None:
        """A refusal as JSON or as a message page."""
        if as_json:
            self.write_json(
                status,
                {"error": self.translate(body_key, **values), "key": body_key, **(extra or {})},
            )
        else:
            self.show_message(status, "invalid", title_key, body_key, alert="warning", **values)


class JobExportHandler(CourseAdminHandler):
    """``GET {prefix}instructor/<course>/jobs/<id>/grades.csv``: an export job's CSV."""

    async def get(self, course_id: str, job_id: str) -> None:
        """The CSV the job made, for the course's instructors only."""
        if self.course_admin(course_id, as_json=False) is None:
            return
        text = await asyncio.to_thread(job_result, self.ctx.db, course_id, int(job_id), "export")
        if text is None:
            self.show_message(404, "not-found", "not_found_title", "job_no_result")
            return
        self.set_header("Content-Type", "text/csv; charset=utf-8")
        self.set_header("Cache-Control", "private, no-store")
        self.set_header(
            "Content-Disposition", f'attachment; filename="{course_id}-grades-job{job_id}.csv"'
        )
        self.finish(text)


def grading_routes(prefix: str) -> list[Any]:
    """Routes of the grading jobs."""
    return [
        (route(prefix, "instructor/([a-z0-9-]+)/jobs"), JobsHandler),
        (
            route(prefix, r"instructor/([a-z0-9-]+)/jobs/([0-9]{1,12})/grades\.csv"),
            JobExportHandler,
        ),
    ]
