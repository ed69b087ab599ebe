"""Enrolling a class from the instructor dashboard: grant or revoke many members at once.

    POST {prefix}instructor/<course>/enrolment   a pasted list (``roster``) and/or an uploaded
                                                 CSV (``roster_file``), ``action`` grant|revoke

Authorised like the rest of the dashboard: the signed-in viewer must administer the course
(its `instructors-<course>` group or a hub admin; XSRF-checked like every form). An instructor
grants and takes back manual access; a hub admin acts as an operator and may also withdraw
purchases (hub/enrolment.py). The work itself is :func:`hub.enrolment.change_enrolment`, the
same as ``learnhub grant COURSE --csv FILE``; the group change goes through the service's
coalesced access sync, so it never interleaves with the periodic one.
"""

from __future__ import annotations

import logging
from typing import Any

from hub import enrolment
from hub.errors import HubAPIError
from hub.i18n import translator
from hub.service.base import route
from hub.service.grading import CourseAdminHandler

log = logging.getLogger("learnhub.service")


class EnrolmentHandler(CourseAdminHandler):
    """Grant or revoke the course for a roster; answer with what changed, line by line."""

    async def post(self, course_id: str) -> None:
        """Parse the roster, apply it, show the report (a page, or JSON when asked)."""
        as_json = self.wants_json()
        found = self.course_admin(course_id, as_json=as_json)
        if found is None:
            return
        viewer, _entry = found
        _ = translator(self.lang)
        action = self.get_body_argument("action", "")
        if action not in (enrolment.Action.GRANT, enrolment.Action.REVOKE):
            self.refuse(as_json, "enrol_bad_action", {})
            return
        text = self.get_body_argument("roster", "")
        for upload in self.request.files.get("roster_file", [])[:1]:
            if len(upload.body) > enrolment.MAX_ROSTER_BYTES:
                self.refuse(
                    as_json, "enrol_too_large", {"limit": enrolment.MAX_ROSTER_BYTES // 1024}
                )
                return
            text = f"{text}\n{upload.body.decode('utf-8-sig', 'replace')}"
        fields = {"user": viewer.name, "course": course_id, "action": action}
        try:
            roster, errors = enrolment.parse_roster(text)
        except enrolment.RosterRefused as exc:
            log.info("enrolment refused", extra={**fields, "reason": exc.key})
            self.refuse(as_json, exc.key, exc.values)
            return
        actor = enrolment.Actor.OPERATOR if viewer.admin else enrolment.Actor.INSTRUCTOR
        hub = self.ctx.hub_client
        if hub is None:
            raise RuntimeError("the enrolment needs the service's Hub client")
        try:
            report = await enrolment.change_enrolment(
                self.ctx.db,
                self.ctx.catalog,
                self.ctx.settings,
                hub,
                course_id,
                roster,
                action=enrolment.Action(action),
                actor=actor,
                by=f"{actor.value} {viewer.name}",
                errors=errors,
                sync=self.ctx.billing.sync_access,
            )
        except HubAPIError as exc:
            log.warning("enrolment failed", extra={**fields, "error": str(exc)})
            self.show_message(
                503, "unavailable", "enrolment_refused_title", "enrol_hub_unreachable"
            )
            return
        log.info(
            "enrolment changed",
            extra={
                **fields,
                "changed": len(report.changed),
                "unchanged": len(report.unchanged),
                "still_in": len(report.still_in),
                "errors": len(report.errors),
                "outcome": "applied",
            },
        )
        body: dict[str, Any] = {
            "course": course_id,
            "action": action,
            "changed": report.changed,
            "unchanged": report.unchanged,
            "still_in": report.still_in,
            "errors": [
                {"line": e.line, "key": e.key, "message": e.message(_)} for e in report.errors
            ],
            "summary": report.summary(_),
        }
        if as_json:
            self.write_json(200, body)
            return
        self.render_page(
            200,
            "enrolment_result.html",
            title=_("enrolment_result_title", course=course_id),
            lines=report.lines(_)[1:],
            summary=body["summary"],
            error_count=len(report.errors),
            dashboard_url=f"{self.ctx.prefix}instructor/{course_id}#learnhub-enrolment",
        )

    def refuse(self, as_json: bool, key: str, values: dict[str, Any]) -> None:
        """The whole roster refused: 400 with the reason."""
        if as_json:
            self.write_json(400, {"error": self.translate(key, **values), "key": key})
        else:
            self.show_message(
                400, "invalid", "enrolment_refused_title", key, alert="warning", **values
            )


def enrolment_routes(prefix: str) -> list[Any]:
    """The route of the dashboard's enrolment form."""
    return [(route(prefix, "instructor/([a-z0-9-]+)/enrolment"), EnrolmentHandler)]
