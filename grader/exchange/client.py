"""nbgrader's exchange over HTTP: the client classes, for learners and instructors.

Plugged into nbgrader through ``ExchangeFactory`` (e.g. in ``nbgrader_config.py``)::

    c.ExchangeFactory.fetch_assignment = "learnhub_exchange.ExchangeFetchAssignment"
    c.ExchangeFactory.submit = "learnhub_exchange.ExchangeSubmit"
    ...                                   # list, fetch_feedback, release_assignment,
                                          # collect, release_feedback: same names

so ``nbgrader fetch_assignment|submit|list|fetch_feedback|release_assignment|collect|
release_feedback`` and JupyterLab's Assignments tab talk to the LearnHub service instead of a
shared directory. Each class keeps nbgrader's steps (``init_src``, ``init_dest``,
``copy_files``) and return shapes (``ExchangeList`` gives the dicts the Assignments tab reads).

Configuration: ``HTTPExchange.exchange_url`` (default: env ``LEARNHUB_EXCHANGE_URL``) and
``HTTPExchange.api_token`` (default: env ``LEARNHUB_EXCHANGE_TOKEN``, else the server's own
``JUPYTERHUB_API_TOKEN``). The server decides who the caller is from the token alone.

This module depends only on nbgrader and the standard library: it is copied into the course
image as ``learnhub_exchange``.
"""

from __future__ import annotations

import base64
import glob
import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections import defaultdict
from pathlib import PurePosixPath
from typing import Any, NoReturn
from urllib.parse import quote, urlencode

from nbgrader.exchange import abc
from nbgrader.utils import ignore_patterns, parse_utc
from traitlets import Bool, Float, Unicode, default

#: What the client accepts from the server when unpacking (bounds a broken or hostile reply).
MAX_UNPACKED_BYTES = 1024 * 1024 * 1024
_UNSAFE_NAME = re.compile(r"[/\\\x00-\x1f]")


def safe_name(name: str, what: str) -> str:
    """``name`` if it can be used as one path component, else ValueError."""
    if not name or name in (".", "..") or name.startswith(".") or _UNSAFE_NAME.search(name):
        raise ValueError(f"unsafe {what} from the exchange: {name!r}")
    return name


def pack(folder: str, ignore: Any = None) -> bytes:
    """A gzip'd tar of ``folder``'s regular files (relative names), skipping what ``ignore``
    (a :func:`shutil.copytree`-style ignore function) says, and every symlink."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for dirpath, dirnames, filenames in os.walk(folder):
            ignored = set(ignore(dirpath, dirnames + filenames)) if ignore else set()
            dirnames[:] = sorted(
                d
                for d in dirnames
                if d not in ignored and not os.path.islink(os.path.join(dirpath, d))
            )
            for filename in sorted(filenames):
                path = os.path.join(dirpath, filename)
                if filename in ignored or os.path.islink(path) or not os.path.isfile(path):
                    continue
                rel = os.path.relpath(path, folder).replace(os.sep, "/")
                archive.add(path, arcname=rel, recursive=False)
    return buffer.getvalue()


def unpack(data: bytes, dest: str) -> None:
    """Unpack a gzip'd tar from the exchange into ``dest``: regular files and folders only,
    no absolute paths, no ``..`` (checked here rather than trusting the server)."""
    total = 0
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        for member in archive:
            rel = PurePosixPath(member.name)
            parts = [p for p in rel.parts if p not in ("", ".")]
            if rel.is_absolute() or not parts or ".." in parts:
                raise ValueError(f"unsafe path in download: {member.name!r}")
            target = os.path.join(dest, *parts)
            if member.isdir():
                os.makedirs(target, exist_ok=True)
                continue
            if not member.isreg():
                raise ValueError(f"unexpected non-file in download: {member.name!r}")
            total += member.size
            if total > MAX_UNPACKED_BYTES:
                raise ValueError("download unpacks to more than 1 GiB")
            source = archive.extractfile(member)
            if source is None:
                raise ValueError(f"no data for {member.name!r}")
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with source, open(target, "wb") as out:
                shutil.copyfileobj(source, out)


def _md5(path: str) -> str:
    with open(path, "rb") as fh:
        # md5 because nbgrader's own list compares feedback files that way.
        return hashlib.md5(fh.read(), usedforsecurity=False).hexdigest()


class HTTPExchange(abc.Exchange):  # type: ignore[misc]
    """What every LearnHub exchange operation shares: where the server is, and the token."""

    exchange_url = Unicode(
        help="Base URL of the LearnHub exchange, e.g. "
        "http://172.17.0.1:8081/services/learnhub/exchange/ (default: $LEARNHUB_EXCHANGE_URL)."
    ).tag(config=True)

    api_token = Unicode(
        help="JupyterHub API token sent to the exchange (default: $LEARNHUB_EXCHANGE_TOKEN, "
        "else $JUPYTERHUB_API_TOKEN)."
    ).tag(config=True)

    http_timeout = Float(120.0, help="Seconds to wait for the exchange.").tag(config=True)

    path_includes_course = Bool(
        False,
        help="Fetch into ./<course>/<assignment> instead of ./<assignment> (as nbgrader's own).",
    ).tag(config=True)

    @default("exchange_url")
    def _exchange_url_default(self) -> str:
        return os.environ.get("LEARNHUB_EXCHANGE_URL", "")

    @default("api_token")
    def _api_token_default(self) -> str:
        return os.environ.get("LEARNHUB_EXCHANGE_TOKEN") or os.environ.get(
            "JUPYTERHUB_API_TOKEN", ""
        )

    def fail(self, msg: str) -> NoReturn:
        """Log and raise nbgrader's ExchangeError (what nbgrader's apps and UI catch)."""
        self.log.fatal(msg)
        raise abc.ExchangeError(msg)

    # -- HTTP ------------------------------------------------------------------------------

    def course_id(self) -> str:
        """The course of this operation; fails clearly when none is configured."""
        course_id = str(self.coursedir.course_id or "")
        if not course_id:
            self.fail("No course id specified. Re-run with --course flag.")
        return course_id

    def url(self, path: str, query: dict[str, str] | None = None) -> str:
        """The URL of ``path`` under this course's exchange API."""
        if not self.exchange_url:
            self.fail(
                "The LearnHub exchange is not configured: set LEARNHUB_EXCHANGE_URL "
                "(or HTTPExchange.exchange_url)."
            )
        base = self.exchange_url if self.exchange_url.endswith("/") else self.exchange_url + "/"
        url = f"{base}v1/courses/{quote(self.course_id(), safe='')}/{path}"
        return f"{url}?{urlencode(query)}" if query else url

    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        content_type: str = "application/octet-stream",
        query: dict[str, str] | None = None,
    ) -> bytes:
        """Send a request; return the body, or fail with the server's own message."""
        if not self.api_token:
            self.fail("No JupyterHub token: set JUPYTERHUB_API_TOKEN or LEARNHUB_EXCHANGE_TOKEN.")
        url = self.url(path, query)
        headers = {"Authorization": f"token {self.api_token}", "Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        req = urllib.request.Request(url, data=body, headers=headers, method=method)  # noqa: S310
        try:
            with urllib.request.urlopen(req, timeout=self.http_timeout) as response:  # noqa: S310
                return bytes(response.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read()
            try:
                message = json.loads(detail)["error"]
            except (ValueError, KeyError, TypeError):
                message = detail.decode("utf-8", "replace")[:500] or exc.reason
            self.fail(f"The exchange refused ({exc.code}): {message}")
        except (urllib.error.URLError, OSError) as exc:
            self.fail(f"Cannot reach the LearnHub exchange at {self.exchange_url}: {exc}")

    def request_json(self, method: str, path: str, **kwargs: Any) -> Any:
        """:meth:`request` with a JSON answer."""
        data = self.request(method, path, **kwargs)
        try:
            return json.loads(data)
        except ValueError:
            self.fail(f"The exchange sent an invalid answer to {method} {path}")

    def local_root(self) -> str:
        """The learner's folder of this assignment (``./<assignment>`` by default)."""
        parts = [str(self.coursedir.assignment_id)]
        if self.path_includes_course:
            parts.insert(0, str(self.coursedir.course_id))
        return os.path.join(*parts)

    def packing_ignore(self) -> Any:
        """nbgrader's own file filters (``CourseDirectory.ignore``/``include``/size)."""
        return ignore_patterns(
            exclude=self.coursedir.ignore,
            include=self.coursedir.include,
            max_file_size=self.coursedir.max_file_size,
            log=self.log,
        )

    def check_dir_size(self, folder: str) -> None:
        """nbgrader's ``CourseDirectory.max_dir_size`` check, before anything is sent."""
        total = 0
        for dirpath, _, filenames in os.walk(folder):
            for filename in filenames:
                path = os.path.join(dirpath, filename)
                if not os.path.islink(path):
                    total += os.path.getsize(path)
        if total > 1000 * self.coursedir.max_dir_size:
            self.fail(
                f"Directory size is too big: {total} bytes, the maximum is "
                f"{1000 * self.coursedir.max_dir_size}"
            )

    def init_src(self) -> None:
        """Nothing to prepare by default."""

    def init_dest(self) -> None:
        """Nothing to prepare by default."""


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
                        has_local and has_exchange and _md5(local) != feedback[notebook_id]
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


#: ``ExchangeFactory`` trait -> class of this module.
EXCHANGE_CLASSES = {
    "exchange": HTTPExchange,
    "fetch_assignment": ExchangeFetchAssignment,
    "fetch_feedback": ExchangeFetchFeedback,
    "list": ExchangeList,
    "submit": ExchangeSubmit,
    "release_assignment": ExchangeReleaseAssignment,
    "collect": ExchangeCollect,
    "release_feedback": ExchangeReleaseFeedback,
}


def configure_nbgrader(c: Any, course_id: str | None = None) -> None:
    """Point nbgrader's ``ExchangeFactory`` at these classes (and set the course, if given).

    Called from an ``nbgrader_config.py``; only sets values, so running it twice is harmless.
    """
    for trait, cls in EXCHANGE_CLASSES.items():
        setattr(c.ExchangeFactory, trait, f"{cls.__module__}.{cls.__name__}")
    if course_id:
        c.CourseDirectory.course_id = course_id
