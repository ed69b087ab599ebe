"""The HTTP side of the assignment exchange: tornado handlers for the LearnHub service.

Mounted with :func:`exchange_routes` under ``{prefix}exchange/v1/``. Every request carries the
caller's JupyterHub token (``Authorization: token ...``); no cookie is ever read, so the app's
XSRF check does not apply (a cross-site form cannot set that header). Rights per course:

============================================  ==========  ===================================
route (under ``exchange/v1/courses/<course>/``)  who         what
============================================  ==========  ===================================
``GET assignments``                           learner     released assignments
``GET assignments/<a>``                       learner     the release as ``.tar.gz``
``PUT assignments/<a>[?force=1]``             instructor  release (body: ``.tar.gz``)
``POST assignments/<a>/submissions``          learner     submit (body: ``.tar.gz``)
``POST assignments/<a>/feedback``             instructor  release feedback (JSON)
``GET my/submissions[?assignment=]``          learner     own submissions + feedback state
``GET my/feedback[?assignment=]``             learner     own feedback (JSON with HTML)
``GET submissions[?assignment=&student=&latest=1]``  instructor  everyone's submissions
``GET submissions/<uid>``                     instructor  one submission as ``.tar.gz``
============================================  ==========  ===================================

"learner" means member of ``course-<id>``, of ``instructors-<id>``, or admin; "instructor" means
member of ``instructors-<id>`` or admin. A learner's identity always comes from the token, never
from the request, so nobody can read or write anyone else's work.

An upload over a limit is answered ``413`` (one upload too large: archive size, entries, one
file, unpacked size) or ``422`` (what is kept would exceed a quota: per learner and assignment,
per course), as ``{"error", "status", "limit", "allowed"}`` where ``limit`` names the setting.
Uploads are unpacked and stored on their own small thread pool, so a burst of them queues there
instead of delaying the service's pages and webhooks on the default executor.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import json
import logging
import re
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

from tornado import web

from grader.exchange.auth import Authorizer, MissingScope
from grader.exchange.storage import (
    ExchangeStorage,
    ExchangeStorageError,
    FeedbackInfo,
    LimitExceeded,
    ReleaseInfo,
    SubmissionInfo,
)
from hub.access.policy import Member
from hub.errors import HubAPIError

log = logging.getLogger("learnhub.exchange")

#: Version segment of the exchange API paths.
API_VERSION = "v1"
#: A JSON body (feedback) may carry HTML of several notebooks, base64-encoded.
JSON_OVERHEAD = 2


class ExchangeHTTPError(web.HTTPError):
    """An error answered as ``{"error": message, "status": code, **details}``."""

    def __init__(self, status: int, message: str, **details: Any) -> None:
        super().__init__(status)
        self.message = message
        self.details = details


class ExchangeHandler(web.RequestHandler):
    """Authentication, errors as JSON, access to storage and authorizer."""

    caller: Member

    def initialize(
        self, storage: ExchangeStorage, authorizer: Authorizer, uploads: Executor
    ) -> None:
        """Tornado passes the route's keyword arguments here."""
        self.storage = storage
        self.authorizer = authorizer
        self.uploads = uploads

    def check_xsrf_cookie(self) -> None:
        """Token-authenticated API: no cookie grants anything here, so there is nothing to forge."""

    def set_default_headers(self) -> None:
        """Answers are private to the caller."""
        self.set_header("Cache-Control", "no-store")

    async def prepare(self) -> None:  # type: ignore[override]
        """Authenticate the caller by their Hub token (401 without a valid one)."""
        header = self.request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() not in ("token", "bearer") or not token:
            raise ExchangeHTTPError(
                401, "authentication required: send 'Authorization: token <hub token>'"
            )
        try:
            caller = await self.authorizer.identify(token)
        except MissingScope as exc:
            log.warning("exchange refused token", extra={"outcome": "missing_scope"})
            raise ExchangeHTTPError(403, str(exc)) from exc
        except HubAPIError as exc:
            log.error("exchange cannot verify token", extra={"error": str(exc), "outcome": "error"})
            raise ExchangeHTTPError(503, "cannot verify the token right now; try again") from exc
        if caller is None:
            raise ExchangeHTTPError(401, "invalid or expired token")
        self.caller = caller

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Every error is JSON, with a message a person can act on; never a traceback."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        details: dict[str, Any] = {}
        if isinstance(exc, ExchangeHTTPError):
            message = exc.message
            details = exc.details
        elif isinstance(exc, web.HTTPError) and exc.log_message:
            message = exc.log_message % exc.args if exc.args else exc.log_message
        else:
            message = self._reason
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": message, "status": status_code, **details}))

    def write_json(self, body: Any, status: int = 200) -> None:
        """Finish with a JSON body."""
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))

    def send_archive(self, data: bytes, filename: str) -> None:
        """Finish with a ``.tar.gz`` body."""
        self.set_header("Content-Type", "application/gzip")
        self.set_header("Content-Disposition", f'attachment; filename="{filename}"')
        self.finish(data)

    def event(self, message: str, course_id: str, outcome: str, **fields: Any) -> None:
        """A structured log line: who, course, outcome, and what else matters."""
        log.info(
            message,
            extra={"user": self.caller.name, "course": course_id, "outcome": outcome, **fields},
        )

    def require(self, course_id: str, *, instructor: bool = False) -> None:
        """404 for an unknown course, 403 unless the caller has the needed right in it."""
        try:
            self.storage.check_course(course_id)
        except ExchangeStorageError as exc:
            raise ExchangeHTTPError(exc.status, str(exc)) from exc
        allowed = (
            self.caller.administers(course_id) if instructor else self.caller.may_open(course_id)
        )
        if not allowed:
            self.event(
                "exchange refused",
                course_id,
                "forbidden",
                method=self.request.method,
                path=self.request.path,
            )
            what = "instructor access to" if instructor else "access to"
            raise ExchangeHTTPError(403, f"you do not have {what} course {course_id}")

    async def call(
        self, func: Any, *args: Any, executor: Executor | None = None, **kwargs: Any
    ) -> Any:
        """Run a blocking storage call in a thread; map its refusals to HTTP errors.

        ``executor``: the pool to run it on (uploads pass theirs), else the default one.
        """
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(executor, functools.partial(func, *args, **kwargs))
        except LimitExceeded as exc:
            raise ExchangeHTTPError(
                exc.status, str(exc), limit=exc.limit, allowed=exc.allowed
            ) from exc
        except ExchangeStorageError as exc:
            raise ExchangeHTTPError(exc.status, str(exc)) from exc


@web.stream_request_body
class UploadHandler(ExchangeHandler):
    """A handler whose body is an upload, bounded by the storage's size limit.

    The body is streamed so that an oversized upload is never held in memory: past the limit
    the rest is read and dropped, and the request is answered with a clear 413 (answering
    before the body is read would make most clients see a reset connection instead).
    """

    _chunks: list[bytes]
    _received: int
    _too_large: bool

    def limit(self) -> int:
        """Most bytes this route accepts."""
        return self.storage.limits.archive_bytes

    async def prepare(self) -> None:  # type: ignore[override]
        """Authenticate, then get ready to receive the body."""
        self._chunks = []
        self._received = 0
        self._too_large = False
        await super().prepare()
        declared = self.request.headers.get("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit():
            self._too_large = True

    def data_received(self, chunk: bytes) -> None:
        """Keep the body while it is within the limit."""
        self._received += len(chunk)
        if self._received > self.limit():
            self._too_large = True
            self._chunks = []
        if not self._too_large:
            self._chunks.append(chunk)

    def body(self) -> bytes:
        """The whole upload; 413 if it was over the limit."""
        if self._too_large:
            raise ExchangeHTTPError(
                413,
                f"upload too large: the limit is {self.limit()} bytes "
                f"({self.limit() / 2**20:.1f} MiB, exchange.max_submission_mib); remove "
                "large data files from the assignment folder and submit again",
                limit="exchange.max_submission_mib",
                allowed=self.limit(),
            )
        return b"".join(self._chunks)


def release_json(info: ReleaseInfo) -> dict[str, Any]:
    """A released assignment as the API shows it."""
    return {
        "course_id": info.course_id,
        "assignment_id": info.assignment_id,
        "notebooks": info.notebooks,
        "size": info.size,
        "released_at": info.released_at.isoformat(),
    }


def feedback_json(info: FeedbackInfo) -> dict[str, Any]:
    """Released feedback of one notebook as the API shows it."""
    return {
        "notebook_id": info.notebook_id,
        "checksum": info.checksum,
        "released_at": info.released_at.isoformat(),
    }


def submission_json(info: SubmissionInfo) -> dict[str, Any]:
    """A submission as the API shows it."""
    return {
        "id": info.uid,
        "course_id": info.course_id,
        "assignment_id": info.assignment_id,
        "student_id": info.student,
        "timestamp": info.timestamp,
        "submitted_at": info.submitted_at.isoformat(),
        "size": info.size,
        "notebooks": sorted(info.checksums),
        "checksums": info.checksums,
        "feedback": [feedback_json(f) for f in info.feedback],
    }


class ReleasedListHandler(ExchangeHandler):
    """``GET courses/<course>/assignments``."""

    async def get(self, course_id: str) -> None:
        """The course's released assignments."""
        self.require(course_id)
        releases = await self.call(self.storage.list_released, course_id)
        self.write_json({"assignments": [release_json(r) for r in releases]})


class ReleaseHandler(UploadHandler):
    """``GET``/``PUT courses/<course>/assignments/<assignment>``."""

    async def get(self, course_id: str, assignment_id: str) -> None:
        """Fetch the released files."""
        self.require(course_id)
        data = await self.call(self.storage.released_archive, course_id, assignment_id)
        self.event("exchange fetch", course_id, "sent", assignment=assignment_id, size=len(data))
        self.send_archive(data, f"{assignment_id}.tar.gz")

    async def put(self, course_id: str, assignment_id: str) -> None:
        """Release (or with ``?force=1`` re-release) an assignment."""
        self.require(course_id, instructor=True)
        force = self.get_query_argument("force", "0") in ("1", "true", "yes")
        info = await self.call(
            self.storage.release,
            course_id,
            assignment_id,
            self.body(),
            by=self.caller.name,
            force=force,
            executor=self.uploads,
        )
        self.event(
            "exchange release",
            course_id,
            "released",
            assignment=assignment_id,
            size=info.size,
            force=force,
        )
        self.write_json(release_json(info), status=201)


class SubmitHandler(UploadHandler):
    """``POST courses/<course>/assignments/<assignment>/submissions``."""

    async def post(self, course_id: str, assignment_id: str) -> None:
        """Store a new submission of the caller (earlier ones are kept)."""
        self.require(course_id)
        try:
            body = self.body()
        except ExchangeHTTPError:
            self.event(
                "exchange submit",
                course_id,
                "too-large",
                assignment=assignment_id,
                size=self._received,
            )
            raise
        info = await self.call(
            self.storage.submit,
            course_id,
            assignment_id,
            self.caller.name,
            body,
            executor=self.uploads,
        )
        self.event(
            "exchange submit",
            course_id,
            "stored",
            assignment=assignment_id,
            size=info.size,
            submission=info.uid,
        )
        self.write_json(submission_json(info), status=201)


class FeedbackReleaseHandler(UploadHandler):
    """``POST courses/<course>/assignments/<assignment>/feedback``.

    Body: ``{"student_id", "submission_secret" | "timestamp", "notebooks": {id: base64 html}}``.
    """

    def limit(self) -> int:
        """Base64 and JSON make the body larger than the HTML itself."""
        return self.storage.limits.archive_bytes * JSON_OVERHEAD

    async def post(self, course_id: str, assignment_id: str) -> None:
        """Attach feedback to one submission of one learner."""
        self.require(course_id, instructor=True)
        try:
            payload = json.loads(self.body())
            student = payload["student_id"]
            raw = payload["notebooks"]
            if not isinstance(student, str) or not isinstance(raw, dict):
                raise TypeError("student_id must be a string and notebooks an object")
            notebooks = {str(k): base64.b64decode(v, validate=True) for k, v in raw.items()}
            secret = payload.get("submission_secret")
            timestamp = payload.get("timestamp")
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise ExchangeHTTPError(400, f"malformed feedback request: {exc}") from exc
        info = await self.call(
            self.storage.release_feedback,
            course_id,
            assignment_id,
            student,
            notebooks,
            executor=self.uploads,
            by=self.caller.name,
            secret=secret if isinstance(secret, str) else None,
            timestamp=timestamp if isinstance(timestamp, str) else None,
        )
        self.event(
            "exchange feedback released",
            course_id,
            "released",
            assignment=assignment_id,
            student=student,
            notebooks=len(notebooks),
        )
        self.write_json(submission_json(info), status=201)


class MySubmissionsHandler(ExchangeHandler):
    """``GET courses/<course>/my/submissions``: the caller's own submissions only."""

    async def get(self, course_id: str) -> None:
        """Own submissions with their feedback state, oldest first."""
        self.require(course_id)
        assignment = self.get_query_argument("assignment", None) or None
        infos = await self.call(
            self.storage.submissions, course_id, assignment_id=assignment, student=self.caller.name
        )
        self.write_json({"submissions": [submission_json(i) for i in infos]})


class MyFeedbackHandler(ExchangeHandler):
    """``GET courses/<course>/my/feedback``: the caller's own released feedback only."""

    async def get(self, course_id: str) -> None:
        """Own feedback HTML per submission and notebook."""
        self.require(course_id)
        assignment = self.get_query_argument("assignment", None) or None
        items = await self.call(self.storage.feedback_of, course_id, self.caller.name, assignment)
        self.event(
            "exchange fetch feedback", course_id, "sent", assignment=assignment, files=len(items)
        )
        self.write_json(
            {
                "feedback": [
                    {
                        "submission": info.uid,
                        "assignment_id": info.assignment_id,
                        "timestamp": info.timestamp,
                        "notebook_id": notebook_id,
                        "html": base64.b64encode(html).decode("ascii"),
                    }
                    for info, notebook_id, html in items
                ]
            }
        )


class SubmissionsHandler(ExchangeHandler):
    """``GET courses/<course>/submissions``: every learner's submissions (instructors)."""

    async def get(self, course_id: str) -> None:
        """Submissions, filtered by assignment and student; ``latest=1``: newest per student."""
        self.require(course_id, instructor=True)
        infos = await self.call(
            self.storage.submissions,
            course_id,
            assignment_id=self.get_query_argument("assignment", None) or None,
            student=self.get_query_argument("student", None) or None,
            latest=self.get_query_argument("latest", "0") in ("1", "true", "yes"),
        )
        self.write_json({"submissions": [submission_json(i) for i in infos]})


class SubmissionHandler(ExchangeHandler):
    """``GET courses/<course>/submissions/<id>``: one submission's files (instructors)."""

    async def get(self, course_id: str, uid: str) -> None:
        """The submission as ``.tar.gz`` with ``timestamp.txt`` and ``submission_secret.txt``."""
        self.require(course_id, instructor=True)
        info, data = await self.call(self.storage.submission_archive, course_id, uid)
        self.event(
            "exchange collect",
            course_id,
            "sent",
            assignment=info.assignment_id,
            student=info.student,
            submission=uid,
        )
        self.send_archive(data, f"{uid}.tar.gz")


class NotFoundHandler(ExchangeHandler):
    """Anything else under the exchange: a JSON 404 (after authentication, so it leaks nothing)."""

    async def get(self, *_: str) -> None:
        """No such route."""
        raise ExchangeHTTPError(404, "no such exchange resource")

    post = put = delete = get


def exchange_routes(
    prefix: str, *, storage: ExchangeStorage, authorizer: Authorizer
) -> list[tuple[str, type[web.RequestHandler], dict[str, Any]]]:
    """The exchange's tornado routes under ``{prefix}exchange/v1/``.

    ``prefix`` is the service prefix (ending in ``/``); it may contain regex metacharacters
    (the hub's base URL), so it is escaped. The routes share one upload pool of
    ``storage.limits.upload_workers`` threads, however many apps mount them.
    """
    base = re.escape(prefix) + f"exchange/{API_VERSION}/courses/([^/]+)/"
    uploads = ThreadPoolExecutor(
        storage.limits.upload_workers, thread_name_prefix="exchange-upload"
    )
    kwargs: dict[str, Any] = {"storage": storage, "authorizer": authorizer, "uploads": uploads}
    part = "([^/]+)"
    routes: list[tuple[str, type[web.RequestHandler]]] = [
        (base + "assignments", ReleasedListHandler),
        (base + f"assignments/{part}", ReleaseHandler),
        (base + f"assignments/{part}/submissions", SubmitHandler),
        (base + f"assignments/{part}/feedback", FeedbackReleaseHandler),
        (base + "my/submissions", MySubmissionsHandler),
        (base + "my/feedback", MyFeedbackHandler),
        (base + "submissions", SubmissionsHandler),
        (base + f"submissions/{part}", SubmissionHandler),
        (re.escape(prefix) + "exchange/(.*)", NotFoundHandler),
    ]
    return [(pattern, handler, kwargs) for pattern, handler in routes]
