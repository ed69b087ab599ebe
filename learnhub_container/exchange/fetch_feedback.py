"""``nbgrader fetch_feedback`` over HTTP."""

from __future__ import annotations

import base64
import os

from nbgrader.exchange import abc

from learnhub_container.exchange.archive import safe_name
from learnhub_container.exchange.exchange import HTTPExchange


class ExchangeFetchFeedback(HTTPExchange, abc.ExchangeFetchFeedback):  # type: ignore[misc]
    """``nbgrader fetch_feedback``: own feedback into ``./<assignment>/feedback/<timestamp>/``."""

    def init_src(self) -> None:
        """The course must be known."""
        self.course_id()

    def init_dest(self) -> None:
        """Feedback goes next to the assignment, as with nbgrader's own exchange."""
        self.dest_path = os.path.abspath(
            os.path.join(self.assignment_dir, self.local_root(), "feedback")
        )

    def copy_files(self) -> None:
        """Write each feedback file; later releases of the same feedback replace earlier ones."""
        query = {"assignment": self.coursedir.assignment_id}
        items = self.request_json("GET", "my/feedback", query=query)["feedback"]
        if not items:
            self.log.warning(
                "No feedback available yet for %s %s",
                self.coursedir.course_id,
                self.coursedir.assignment_id,
            )
        for item in items:
            try:
                timestamp = safe_name(str(item["timestamp"]), "timestamp")
                notebook_id = safe_name(str(item["notebook_id"]), "notebook id")
            except ValueError as exc:
                self.fail(str(exc))
            folder = os.path.join(self.dest_path, timestamp)
            os.makedirs(folder, exist_ok=True)
            target = os.path.join(folder, f"{notebook_id}.html")
            with open(target, "wb") as fh:
                fh.write(base64.b64decode(item["html"]))
            self.log.info("Fetched feedback: %s", target)
