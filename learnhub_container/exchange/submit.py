"""``nbgrader submit`` over HTTP."""

from __future__ import annotations

import glob
import os
from urllib.parse import quote

from nbgrader.exchange import abc

from learnhub_container.exchange.archive import pack
from learnhub_container.exchange.exchange import HTTPExchange


class ExchangeSubmit(HTTPExchange, abc.ExchangeSubmit):  # type: ignore[misc]
    """``nbgrader submit``: upload ``./<assignment>``; the server stamps and keeps every copy."""

    def init_src(self) -> None:
        """The assignment folder must exist."""
        self.src_path = os.path.abspath(os.path.join(self.assignment_dir, self.local_root()))
        if not os.path.isdir(self.src_path):
            self.fail(f"Assignment not found at: {self.src_path}")

    def init_dest(self) -> None:
        """The course must be known."""
        self.course_id()

    def check_filename_diff(self) -> None:
        """Warn (or with ``strict`` fail) when notebooks of the release are missing."""
        releases = self.request_json("GET", "assignments")["assignments"]
        release = next(
            (r for r in releases if r["assignment_id"] == self.coursedir.assignment_id), None
        )
        if release is None:
            self.fail(
                f"Assignment {self.coursedir.assignment_id} is not released in course "
                f"{self.coursedir.course_id}"
            )
        released = set(release["notebooks"])
        submitted = {
            os.path.relpath(p, self.src_path).replace(os.sep, "/")
            for p in glob.glob(os.path.join(self.src_path, "**", "*.ipynb"), recursive=True)
        }
        missing, extra = sorted(released - submitted), sorted(submitted - released)
        if missing or extra:
            diff = f"missing: {', '.join(missing) or '-'}; extra: {', '.join(extra) or '-'}"
            if missing and self.strict:
                self.fail(
                    f"Assignment {self.coursedir.assignment_id} not submitted. There are "
                    f"missing notebooks for the submission: {diff}"
                )
            self.log.warning(
                "Possible missing notebooks and/or extra notebooks submitted: %s", diff
            )

    def copy_files(self) -> None:
        """Pack with nbgrader's filters and upload."""
        self.check_filename_diff()
        self.check_dir_size(self.src_path)
        data = pack(self.src_path, self.packing_ignore())
        aid = quote(self.coursedir.assignment_id, safe="")
        info = self.request_json(
            "POST", f"assignments/{aid}/submissions", body=data, content_type="application/gzip"
        )
        # The server's clock is the one that counts for deadlines.
        self.timestamp = info["timestamp"]
        self.log.info(
            "Submitted as: %s %s %s",
            self.coursedir.course_id,
            info["assignment_id"],
            self.timestamp,
        )
