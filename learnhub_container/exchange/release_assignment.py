"""``nbgrader release_assignment`` over HTTP (instructors)."""

from __future__ import annotations

import os
from urllib.parse import quote

from nbgrader.exchange import abc

from learnhub_container.exchange.archive import pack
from learnhub_container.exchange.exchange import HTTPExchange


class ExchangeReleaseAssignment(HTTPExchange, abc.ExchangeReleaseAssignment):  # type: ignore[misc]
    """``nbgrader release_assignment``: upload ``release/<assignment>`` to the course."""

    def init_src(self) -> None:
        """The generated release folder must exist (hint when only the source does)."""
        cd = self.coursedir
        self.src_path = cd.format_path(cd.release_directory, ".", cd.assignment_id)
        if not os.path.isdir(self.src_path):
            source = cd.format_path(cd.source_directory, ".", cd.assignment_id)
            if os.path.isdir(source):
                self.fail(
                    f"Assignment found in '{source}' but not '{self.src_path}', run "
                    "`nbgrader generate_assignment` first."
                )
            self.fail(f"Assignment not found at: {self.src_path}")

    def init_dest(self) -> None:
        """The course must be known."""
        self.course_id()

    def copy_files(self) -> None:
        """Pack and upload; ``--force`` replaces an earlier release."""
        self.check_dir_size(self.src_path)
        data = pack(self.src_path, self.packing_ignore())
        aid = quote(self.coursedir.assignment_id, safe="")
        self.request_json(
            "PUT",
            f"assignments/{aid}",
            body=data,
            content_type="application/gzip",
            query={"force": "1"} if self.force else None,
        )
        self.log.info("Released as: %s %s", self.coursedir.course_id, self.coursedir.assignment_id)
