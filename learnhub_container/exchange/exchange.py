"""The base of every LearnHub exchange operation: the server's address, the token, requests."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any, NoReturn
from urllib.parse import quote, urlencode

from nbgrader.exchange import abc
from nbgrader.utils import ignore_patterns
from traitlets import Bool, Float, Unicode, default


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
