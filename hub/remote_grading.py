"""`learnhub grader … --hub-url URL`: the dashboard's grading jobs from an instructor's own machine.

The instructor has no shell on the hub host, only a JupyterHub API token of their own (made on
the Hub's token page, ``/hub/token``). This client does what the dashboard's buttons do: it POSTs
the job to the LearnHub service (``instructor/<course>/jobs``, authorised by the token's user
being an instructor of the course, hub/service/grading.py), then follows the job through the
same JSON the dashboard polls, and downloads an export's file. The job itself runs in the
grading worker beside the Hub (grader/worker.py), never here.

Token auth (``Authorization: token …``) carries no ambient credential, so the service asks no
XSRF token of it (hub/service/base.py, ``check_xsrf_cookie``). The token is only ever put in
that header: never printed, logged or put in a URL.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from hub.errors import LearnHubError

#: The environment variable a token may come from when ``--token-file`` is not given.
TOKEN_ENV = "LEARNHUB_TOKEN"  # noqa: S105 (a variable name, not a secret)
#: The LearnHub service's path under the Hub's public URL.
SERVICE_PATH = "services/learnhub/"
#: Seconds between two looks at a running job: the dashboard's poller's pace.
POLL_SECONDS = 1.0
#: Seconds one HTTP request may take; a job may take much longer, it is polled.
REQUEST_TIMEOUT = 30.0
#: The `learnhub grader` actions a remote instructor may ask for (``worker`` is the operator's).
REMOTE_ACTIONS = ("release", "collect", "autograde", "feedback", "export", "extend")


class RemoteGradingError(LearnHubError):
    """A remote grading request that could not be made or was refused; says what to do."""


@dataclass(frozen=True)
class RemoteJob:
    """What to queue: the job kind and the dashboard form fields that describe it."""

    kind: str
    assignment: str
    form: dict[str, str] = field(default_factory=dict)


def read_token(token_file: str | None, environ: Mapping[str, str]) -> str:
    """The instructor's token, from ``token_file`` or else ``$LEARNHUB_TOKEN``."""
    if token_file:
        try:
            token = Path(token_file).read_text().strip()
        except OSError as exc:
            raise RemoteGradingError(
                f"cannot read the token file {token_file}: {exc.strerror}"
            ) from exc
        if not token:
            raise RemoteGradingError(f"the token file {token_file} is empty")
        return token
    token = environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise RemoteGradingError(
            f"--hub-url needs your JupyterHub token: --token-file FILE or ${TOKEN_ENV} "
            "(create one on the Hub's token page, <hub-url>/hub/token)"
        )
    return token


def service_url(hub_url: str) -> str:
    """The LearnHub service's URL from the Hub's public URL (with or without ``hub/``)."""
    parts = urlsplit(hub_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise RemoteGradingError(
            f"--hub-url {hub_url!r} is not an http(s) URL; give the Hub's address as in your "
            "browser, e.g. https://learnhub.example.org/"
        )
    base = hub_url.split("?", 1)[0].split("#", 1)[0]
    if not base.endswith("/"):
        base += "/"
    for tail in ("hub/token/", "hub/home/", "hub/"):
        if base.endswith("/" + tail):
            base = base[: -len(tail)]
            break
    return base + SERVICE_PATH


def remote_job(
    action: str,
    assignment: str,
    *,
    force: bool = False,
    regrade_all: bool = False,
    student: str | None = None,
    hours: float | None = None,
    exporter: str = "csv",
) -> RemoteJob:
    """The job a ``learnhub grader ACTION`` command line asks for (the dashboard's form)."""
    if action not in REMOTE_ACTIONS:
        raise RemoteGradingError(
            f"learnhub grader {action} runs on the hub host only; with --hub-url: "
            + ", ".join(REMOTE_ACTIONS)
        )
    form: dict[str, str] = {}
    kind = action
    if action == "release" and force:
        form["force"] = "1"
    elif action == "autograde":
        if student:
            kind, form["student"] = "regrade-one", student
        else:
            form["scope"] = "all" if regrade_all else "new"
    elif action == "export":
        form["exporter"] = exporter
    elif action == "extend":
        if not student or hours is None:
            raise RemoteGradingError("extend needs --student NAME and --hours N")
        form["student"], form["hours"] = student, f"{hours:g}"
    return RemoteJob(kind=kind, assignment=assignment, form=form)


class RemoteGrading:
    """Queue one job with the instructor's token, follow it, fetch its file."""

    def __init__(
        self,
        hub_url: str,
        token: str,
        *,
        transport: httpx.BaseTransport | None = None,
        poll_seconds: float = POLL_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.service = service_url(hub_url)
        self.hub_url = self.service[: -len(SERVICE_PATH)]
        self.poll_seconds = poll_seconds
        self.sleep = sleep
        self.client = httpx.Client(
            # English, as every other `learnhub` command speaks (the service translates its
            # refusals and job summaries by Accept-Language).
            headers={
                "Authorization": f"token {token}",
                "Accept": "application/json",
                "Accept-Language": "en",
            },
            timeout=REQUEST_TIMEOUT,
            follow_redirects=False,
            transport=transport,
        )

    def close(self) -> None:
        """Close the connections."""
        self.client.close()

    def __enter__(self) -> RemoteGrading:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            return self.client.request(method, url, **kwargs)
        except httpx.TimeoutException as exc:
            raise RemoteGradingError(
                f"the LearnHub service at {self.service} did not answer in "
                f"{REQUEST_TIMEOUT:g} s; try again, or ask an operator whether it is up"
            ) from exc
        except httpx.TransportError as exc:
            raise RemoteGradingError(
                f"cannot reach the LearnHub service at {self.service} ({exc}); "
                "check --hub-url (the Hub's address as in your browser) and your network"
            ) from exc

    def jobs_url(self, course: str) -> str:
        """The course's jobs endpoint."""
        return f"{self.service}instructor/{course}/jobs"

    def queue(self, course: str, job: RemoteJob) -> dict[str, Any]:
        """POST the job; the queued job as the service shows it, or a clear error."""
        data = {"kind": job.kind, "assignment": job.assignment, **job.form}
        response = self._request("POST", self.jobs_url(course), data=data)
        if response.status_code == 202:
            queued: dict[str, Any] = response.json()["job"]
            return queued
        raise self.refusal(course, response)

    def job(self, course: str, job_id: int) -> dict[str, Any]:
        """The job ``job_id`` of ``course`` as the dashboard's JSON shows it."""
        response = self._request("GET", self.jobs_url(course))
        if response.status_code != 200:
            raise self.refusal(course, response)
        for listed in response.json().get("jobs", []):
            if listed.get("id") == job_id:
                found: dict[str, Any] = listed
                return found
        raise RemoteGradingError(
            f"job #{job_id} of {course} is no longer listed by the service; "
            "see the course's instructor dashboard"
        )

    def follow(
        self, course: str, job: dict[str, Any], report: Callable[[str], None]
    ) -> dict[str, Any]:
        """Poll the job until it ends, reporting each submission's new state once."""
        seen: dict[str, str] = {}
        while True:
            for sub in job.get("submissions", []):
                line = _submission_line(sub)
                if seen.get(sub["learner"]) != line:
                    seen[sub["learner"]] = line
                    report(line)
            if not job.get("active"):
                return job
            self.sleep(self.poll_seconds)
            job = self.job(course, int(job["id"]))

    def download(self, course: str, job: dict[str, Any]) -> str:
        """The file an export job made."""
        url = str(job.get("download_url") or "")
        if not url:
            raise RemoteGradingError(f"export job #{job['id']} of {course} made no file")
        target = urljoin(self.service, url)
        # The token goes with every request of this client: never to another origin.
        if urlsplit(target)[:2] != urlsplit(self.service)[:2]:
            raise RemoteGradingError(
                f"export job #{job['id']} of {course} points to another site; "
                "download it from the course's instructor dashboard"
            )
        response = self._request("GET", target, headers={"Accept": "*/*"})
        if response.status_code != 200:
            raise self.refusal(course, response)
        return response.text

    def refusal(self, course: str, response: httpx.Response) -> RemoteGradingError:
        """What a refusal means for the instructor, and what to do about it."""
        status = response.status_code
        message = _json_error(response)
        token_page = f"{self.hub_url}hub/token"
        if status in (301, 302, 303, 307, 401) or (status == 403 and message is None):
            # The service sends a request it cannot tie to a Hub user to the login page.
            if status == 403:
                return RemoteGradingError(
                    "the Hub knows this token but it may not use the LearnHub service; "
                    f"create a token without limiting its scopes at {token_page}"
                )
            return RemoteGradingError(
                "the Hub did not accept this token (401: unknown, expired or revoked); "
                f"create a new one at {token_page}"
            )
        if status == 403:
            return RemoteGradingError(
                f"403: you are not an instructor of {course}; ask an operator to add you to "
                f"instructors-{course}"
            )
        if status == 409:
            busy = message or f"a grading job of {course} is already queued or running."
            return RemoteGradingError(f"409: {busy} Wait until it ends, then ask again.")
        if status in (400, 404) and message:
            return RemoteGradingError(f"{status}: {message}")
        return RemoteGradingError(
            f"the LearnHub service answered {status} at {response.request.url.path}; "
            "try again later, or ask an operator to look at its log"
        )


def _json_error(response: httpx.Response) -> str | None:
    """The service's translated error of a JSON refusal, else None."""
    if not response.headers.get("Content-Type", "").startswith("application/json"):
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    return str(error) if error else None


def _submission_line(sub: Mapping[str, Any]) -> str:
    """One submission's progress: learner, state, score and the reason of a failure."""
    line = f"{sub['learner']:<24} {sub.get('state_label') or sub.get('state', '')}"
    if sub.get("score"):
        line += f" {sub['score']}"
    if sub.get("reason"):
        line += f" ({sub['reason']})"
    return line


def run_remote(
    client: RemoteGrading,
    course: str,
    job: RemoteJob,
    *,
    report: Callable[[str], None],
    output: str | None = None,
    write: Callable[[str], None] | None = None,
) -> int:
    """Queue ``job``, follow it to its end, fetch an export's file; the exit status."""
    queued = client.queue(course, job)
    report(f"queued job #{queued['id']}: {queued.get('label', job.kind)}")
    try:
        ended = client.follow(course, queued, report)
    except KeyboardInterrupt:
        # The job is the hub's now: stopping this command only stops watching it.
        report(
            f"stopped following job #{queued['id']}; it keeps running on the hub "
            "(see the course's instructor dashboard)"
        )
        return 130
    if ended["state"] != "done":
        report(f"job #{ended['id']} {ended.get('state_label', ended['state'])}: {ended['error']}")
        return 1
    if ended.get("summary"):
        report(str(ended["summary"]))
    if job.kind == "export":
        text = client.download(course, ended)
        if output:
            Path(output).write_text(text)
            report(f"wrote {output}")
        elif write is not None:
            write(text)
    report(f"job #{ended['id']} done")
    return 0
