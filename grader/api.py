"""The grades API: `GET {prefix}api/v1/courses/<course>/grades[?assignment=A][&format=csv]`.

For scripts and other systems (an LMS, a spreadsheet): authenticated with a JupyterHub API token
(`Authorization: token ...`) of an instructor of the course or an admin, like the exchange.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from tornado import web

from grader.exchange.auth import Authorizer, MissingScope
from grader.grades_table import grades_csv
from grader.reports import course_grades
from hub.courses import Catalog
from hub.errors import HubAPIError
from hub.settings import Settings


class GradesAPIHandler(web.RequestHandler):
    """Grades of one course as JSON (default) or CSV."""

    def initialize(self, authorizer: Authorizer, settings: Settings, catalog: Catalog) -> None:
        """Dependencies come from the route."""
        self.authorizer = authorizer
        self.learnhub_settings = settings
        self.catalog = catalog

    def check_xsrf_cookie(self) -> None:
        """Token-authenticated GETs only: no cookie, nothing to forge."""

    def _error(self, status: int, message: str) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": message}))

    async def get(self, course_id: str) -> None:
        """The grades, after checking the caller teaches the course."""
        header = self.request.headers.get("Authorization", "")
        token = header[len("token ") :].strip() if header.lower().startswith("token ") else ""
        try:
            caller = await self.authorizer.identify(token) if token else None
        except MissingScope as exc:
            self._error(403, str(exc))
            return
        except HubAPIError:
            self._error(503, "cannot verify the token right now; try again")
            return
        if caller is None:
            self._error(401, "send a JupyterHub API token: Authorization: token <token>")
            return
        entry = self.catalog.get(course_id)
        if entry is None:
            self._error(404, f"no such course {course_id!r}")
            return
        if not caller.administers(course_id):
            self._error(403, f"only instructors of {course_id} may read its grades")
            return
        report = await asyncio.to_thread(course_grades, self.learnhub_settings, entry)
        assignment = self.get_argument("assignment", "")
        rows: list[dict[str, Any]] = [
            r for r in report.rows if not assignment or r["assignment"] == assignment
        ]
        if self.get_argument("format", "json") == "csv":
            self.set_header("Content-Type", "text/csv; charset=utf-8")
            self.finish(grades_csv(rows))
            return
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"course": course_id, "grades": rows}))


def grades_routes(
    prefix: str, *, authorizer: Authorizer, settings: Settings, catalog: Catalog
) -> list[tuple[str, type[web.RequestHandler], dict[str, Any]]]:
    """The grades API route under the service prefix."""
    deps = {"authorizer": authorizer, "settings": settings, "catalog": catalog}
    return [(re.escape(prefix) + r"api/v1/courses/([a-z0-9-]+)/grades", GradesAPIHandler, deps)]
