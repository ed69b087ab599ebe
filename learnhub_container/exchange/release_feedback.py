"""``nbgrader release_feedback`` over HTTP (instructors)."""

from __future__ import annotations

import base64
import glob
import json
import os
import re
from collections import defaultdict
from typing import Any
from urllib.parse import quote

from nbgrader.exchange import abc

from learnhub_container.exchange.exchange import HTTPExchange


class ExchangeReleaseFeedback(HTTPExchange, abc.ExchangeReleaseFeedback):  # type: ignore[misc]
    """``nbgrader release_feedback``: send ``feedback/<student>/<assignment>/*.html`` to the
    submission they were generated from (found by its ``submission_secret.txt``)."""

    def init_src(self) -> None:
        """Where nbgrader's generate_feedback put the HTML."""
        cd = self.coursedir
        student = cd.student_id if cd.student_id else "*"
        self.src_path = cd.format_path(cd.feedback_directory, student, cd.assignment_id)

    def init_dest(self) -> None:
        """The course must be known."""
        self.course_id()

    def copy_files(self) -> None:
        """One request per student, with all of that student's notebooks."""
        cd = self.coursedir
        exclude = set(cd.student_id_exclude.split(",")) if cd.student_id_exclude else set()
        regexp = re.escape(os.path.sep).join(
            [
                cd.format_path(
                    cd.feedback_directory, "(?P<student_id>.*)", cd.assignment_id, escape=True
                ),
                "(?P<notebook_id>.*).html",
            ]
        )
        per_student: dict[tuple[str, str], dict[str, str]] = defaultdict(dict)
        for html_file in sorted(glob.glob(os.path.join(self.src_path, "*.html"))):
            match = re.match(regexp, html_file)
            if match is None:
                self.log.error("Could not match '%s' with regexp '%s'", html_file, regexp)
                continue
            student, notebook_id = match.group("student_id"), match.group("notebook_id")
            if student in exclude:
                continue
            folder = os.path.dirname(html_file)
            with open(html_file, "rb") as fh:
                per_student[(student, folder)][notebook_id] = base64.b64encode(fh.read()).decode()
        if not per_student:
            self.log.warning("No feedback to release for %s %s", cd.course_id, cd.assignment_id)
        aid = quote(cd.assignment_id, safe="")
        for (student, folder), notebooks in sorted(per_student.items()):
            payload: dict[str, Any] = {"student_id": student, "notebooks": notebooks}
            secret_file = os.path.join(folder, "submission_secret.txt")
            timestamp_file = os.path.join(folder, "timestamp.txt")
            if os.path.isfile(secret_file):
                with open(secret_file) as fh:
                    payload["submission_secret"] = fh.read().strip()
            elif os.path.isfile(timestamp_file):
                with open(timestamp_file) as fh:
                    payload["timestamp"] = fh.read().strip()
            else:
                self.log.error("No timestamp.txt for %s's feedback in %s; skipped", student, folder)
                continue
            self.request_json(
                "POST",
                f"assignments/{aid}/feedback",
                body=json.dumps(payload).encode(),
                content_type="application/json",
            )
            self.log.info(
                "Releasing feedback for student '%s' on assignment '%s/%s' (%d notebooks)",
                student,
                cd.course_id,
                cd.assignment_id,
                len(notebooks),
            )
