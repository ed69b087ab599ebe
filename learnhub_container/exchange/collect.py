"""``nbgrader collect`` over HTTP (instructors)."""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from collections import defaultdict
from typing import Any
from urllib.parse import quote

from nbgrader.exchange import abc
from nbgrader.utils import parse_utc

from learnhub_container.exchange.archive import safe_name, unpack
from learnhub_container.exchange.exchange import HTTPExchange


class ExchangeCollect(HTTPExchange, abc.ExchangeCollect):  # type: ignore[misc]
    """``nbgrader collect``: each learner's newest submission into ``submitted/<student>/``."""

    def init_src(self) -> None:
        """Ask the server for the submissions and pick one per student (as nbgrader does)."""
        self.course_id()
        query = {"assignment": self.coursedir.assignment_id}
        if self.coursedir.student_id and self.coursedir.student_id != "*":
            query["student"] = self.coursedir.student_id
        subs = self.request_json("GET", "submissions", query=query)["submissions"]
        duedate = self._duedate() if self.before_duedate else None
        per_student: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for sub in subs:
            sub["parsed"] = parse_utc(sub["timestamp"])
            per_student[sub["student_id"]].append(sub)
        self.src_records = []
        for records in per_student.values():
            records.sort(key=lambda r: r["parsed"], reverse=True)
            chosen = records[0]
            if duedate is not None:
                before = [r for r in records if r["parsed"] <= duedate]
                chosen = before[0] if before else records[0]
            self.src_records.append(chosen)

    def _duedate(self) -> Any:
        from nbgrader.api import Gradebook, MissingEntry

        with Gradebook(self.coursedir.db_url, self.coursedir.course_id) as gb:
            try:
                return gb.find_assignment(self.coursedir.assignment_id).duedate
            except MissingEntry:
                return None

    def copy_files(self) -> None:
        """Download each chosen submission unless an equal or newer one is already there."""
        cd = self.coursedir
        if not self.src_records:
            self.log.warning(
                "No submissions of '%s' for course '%s' to collect", cd.assignment_id, cd.course_id
            )
        else:
            self.log.info(
                "Processing %d submissions of '%s' for course '%s'",
                len(self.src_records),
                cd.assignment_id,
                cd.course_id,
            )
        for rec in self.src_records:
            try:
                student = safe_name(rec["student_id"], "student id")
            except ValueError as exc:
                self.log.error("%s; skipped", exc)
                continue
            dest_path = cd.format_path(cd.submitted_directory, student, cd.assignment_id)
            updating = False
            if os.path.isdir(dest_path):
                existing = cd.get_existing_timestamp(dest_path)
                newer = existing is None or rec["parsed"] > existing
                if (self.update and newer) or (self.before_duedate and existing != rec["parsed"]):
                    updating = True
                else:
                    hint = (
                        "No newer submission to collect"
                        if self.update
                        else ("Submission already exists, use --update to update")
                    )
                    self.log.info("%s: %s %s", hint, student, cd.assignment_id)
                    continue
            data = self.request("GET", f"submissions/{quote(rec['id'], safe='')}")
            os.makedirs(os.path.dirname(dest_path), exist_ok=True)
            staging = tempfile.mkdtemp(prefix=".learnhub-collect-", dir=os.path.dirname(dest_path))
            try:
                try:
                    unpack(data, staging)
                except (ValueError, tarfile.TarError) as exc:
                    self.fail(f"The exchange sent a broken submission: {exc}")
                if updating:
                    self.log.info("Updating submission: %s %s", student, cd.assignment_id)
                    shutil.rmtree(dest_path)
                else:
                    self.log.info("Collecting submission: %s %s", student, cd.assignment_id)
                os.rename(staging, dest_path)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
