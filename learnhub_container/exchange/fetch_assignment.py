"""``nbgrader fetch_assignment`` over HTTP."""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from urllib.parse import quote

from nbgrader.exchange import abc

from learnhub_container.exchange.archive import unpack
from learnhub_container.exchange.exchange import HTTPExchange


class ExchangeFetchAssignment(HTTPExchange, abc.ExchangeFetchAssignment):  # type: ignore[misc]
    """``nbgrader fetch_assignment``: download a released assignment into ``./<assignment>``."""

    def init_src(self) -> None:
        """The course must be known; the server checks access."""
        self.course_id()

    def init_dest(self) -> None:
        """Refuse to overwrite an earlier fetch (unless replacing missing files)."""
        root = self.local_root()
        self.dest_path = os.path.abspath(os.path.join(self.assignment_dir, root))
        if os.path.isdir(self.dest_path) and not self.replace_missing_files:
            self.fail(f"You already have a copy of the assignment in this directory: {root}")

    def copy_files(self) -> None:
        """Download, unpack next to the destination, then move (or fill in missing files)."""
        aid = self.coursedir.assignment_id
        data = self.request("GET", f"assignments/{quote(aid, safe='')}")
        parent = os.path.dirname(self.dest_path)
        os.makedirs(parent, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=".learnhub-fetch-", dir=parent)
        try:
            try:
                unpack(data, staging)
            except (ValueError, tarfile.TarError) as exc:
                self.fail(f"The exchange sent a broken assignment: {exc}")
            if os.path.isdir(self.dest_path):
                self._copy_missing(staging, self.dest_path)
            else:
                os.rename(staging, self.dest_path)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        self.log.info("Fetched as: %s %s", self.coursedir.course_id, aid)

    def _copy_missing(self, src: str, dest: str) -> None:
        for name in sorted(os.listdir(src)):
            source, target = os.path.join(src, name), os.path.join(dest, name)
            if os.path.isdir(source):
                if not os.path.exists(target):
                    self.log.warning("Creating missing directory '%s'", target)
                    os.mkdir(target)
                self._copy_missing(source, target)
            elif not os.path.exists(target):
                self.log.warning("Replacing missing file '%s'", target)
                shutil.copy(source, target)
