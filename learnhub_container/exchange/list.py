"""``nbgrader list`` and the Assignments tab over HTTP."""

from __future__ import annotations

import glob
import os
from collections import defaultdict
from typing import Any

from nbgrader.exchange import abc

from learnhub_container.exchange.archive import file_md5, safe_name
from learnhub_container.exchange.exchange import HTTPExchange


class ExchangeList(HTTPExchange, abc.ExchangeList):  # type: ignore[misc]
    """``nbgrader list`` and the Assignments tab: released, own submitted, or (``--inbound``)
    every learner's submissions, in nbgrader's own dict shapes."""

    def init_dest(self) -> None:
        """Nothing to prepare: the server is asked in :meth:`list_files`."""
        self.course_id()

    def copy_files(self) -> None:
        """Listing copies nothing."""

    def list_files(self) -> list[dict[str, Any]]:
        """The assignments or submissions, logged as nbgrader does and returned as dicts."""
        if self.inbound or self.cached:
            assignments = self.parse_submissions()
            self.log.info("Submitted assignments:")
            for assignment in assignments:
                for info in assignment["submissions"]:
                    self.log.info(self.format_inbound_assignment(info))
        else:
            assignments = self.parse_released()
            self.log.info("Released assignments:")
            for info in assignments:
                self.log.info(self.format_outbound_assignment(info))
        return assignments

    def remove_files(self) -> list[dict[str, Any]]:
        """Not offered: released assignments and submissions are kept by the server."""
        self.fail("The LearnHub exchange does not remove released assignments or submissions.")

    def format_inbound_assignment(self, info: dict[str, Any]) -> str:
        """One submission as a line of ``nbgrader list`` output."""
        msg = "{course_id} {student_id} {assignment_id} {timestamp}".format(**info)
        if info.get("has_local_feedback") and not info.get("feedback_updated"):
            msg += " (feedback already fetched)"
        elif info.get("has_exchange_feedback"):
            msg += " (feedback ready to be fetched)"
        else:
            msg += " (no feedback available)"
        return msg

    def format_outbound_assignment(self, info: dict[str, Any]) -> str:
        """One released assignment as a line of ``nbgrader list`` output."""
        msg = "{course_id} {assignment_id}".format(**info)
        if info["status"] == "fetched":
            msg += " (already downloaded)"
        return msg

    def _local_dir(self, assignment_id: str) -> str:
        parts = [assignment_id]
        if self.path_includes_course:
            parts.insert(0, self.coursedir.course_id)
        return os.path.join(self.assignment_dir, *parts)

    def parse_released(self) -> list[dict[str, Any]]:
        """Released assignments: ``fetched`` when the local folder exists, else ``released``."""
        out = []
        wanted = self.coursedir.assignment_id
        for release in self.request_json("GET", "assignments")["assignments"]:
            aid = safe_name(release["assignment_id"], "assignment id")
            if wanted and aid != wanted:
                continue
            info: dict[str, Any] = {"course_id": self.coursedir.course_id, "assignment_id": aid}
            local = self._local_dir(aid)
            if os.path.exists(local):
                info["status"] = "fetched"
                info["path"] = os.path.abspath(local)
                notebooks = sorted(glob.glob(os.path.join(info["path"], "*.ipynb")))
                info["notebooks"] = [
                    {"notebook_id": os.path.splitext(os.path.basename(nb))[0], "path": nb}
                    for nb in notebooks
                ]
            else:
                info["status"] = "released"
                info["path"] = aid
                info["notebooks"] = [
                    {"notebook_id": os.path.splitext(os.path.basename(nb))[0], "path": nb}
                    for nb in release["notebooks"]
                    if "/" not in nb
                ]
            if self.remove:
                info["status"] = "removed"
            out.append(info)
        return out

    def parse_submissions(self) -> list[dict[str, Any]]:
        """Submissions grouped per course, student and assignment, oldest first."""
        query = {"assignment": self.coursedir.assignment_id} if self.coursedir.assignment_id else {}
        if self.inbound:
            student = self.coursedir.student_id
            if student and student != "*":
                query["student"] = student
            subs = self.request_json("GET", "submissions", query=query)["submissions"]
        else:
            subs = self.request_json("GET", "my/submissions", query=query)["submissions"]
        groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
        for sub in subs:
            info = self._submission_info(sub)
            groups[(info["course_id"], info["student_id"], info["assignment_id"])].append(info)
        out = []
        for key in sorted(groups):
            submissions = sorted(groups[key], key=lambda i: str(i["timestamp"]))
            out.append(
                {
                    "course_id": key[0],
                    "student_id": key[1],
                    "assignment_id": key[2],
                    "status": "submitted",
                    "submissions": submissions,
                }
            )
        return out

    def _submission_info(self, sub: dict[str, Any]) -> dict[str, Any]:
        aid = safe_name(sub["assignment_id"], "assignment id")
        timestamp = str(sub["timestamp"])
        feedback = {f["notebook_id"]: f["checksum"] for f in sub.get("feedback", [])}
        local_feedback_dir = os.path.join(self._local_dir(aid), "feedback", timestamp)
        notebooks = []
        for name in sub["notebooks"]:
            if "/" in name:  # nbgrader lists top-level notebooks only
                continue
            notebook_id = os.path.splitext(name)[0]
            local = os.path.join(local_feedback_dir, f"{notebook_id}.html")
            has_local = os.path.isfile(local)
            has_exchange = notebook_id in feedback
            notebooks.append(
                {
                    "notebook_id": notebook_id,
                    "path": name,
                    "has_local_feedback": has_local,
                    "has_exchange_feedback": has_exchange,
                    "local_feedback_path": local if has_local else None,
                    "feedback_updated": bool(
                        has_local and has_exchange and file_md5(local) != feedback[notebook_id]
                    ),
                }
            )
        has_local_feedback = bool(notebooks) and all(n["has_local_feedback"] for n in notebooks)
        return {
            "course_id": sub["course_id"],
            "student_id": sub["student_id"],
            "assignment_id": aid,
            "timestamp": timestamp,
            "status": "submitted",
            "path": sub["id"],
            "notebooks": notebooks,
            "has_local_feedback": has_local_feedback,
            "has_exchange_feedback": bool(notebooks)
            and all(n["has_exchange_feedback"] for n in notebooks),
            "feedback_updated": any(n["feedback_updated"] for n in notebooks),
            "local_feedback_path": os.path.abspath(local_feedback_dir)
            if has_local_feedback
            else None,
        }
