"""`learnhub grader … --hub-url`: argument handling and what each refusal tells the instructor.

No hub here: the service's answers come from an ``httpx.MockTransport`` shaped like
hub/service/grading.py's. The path through a real hub is tests/test_remote_grading_hub.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub.cli import main
from hub.remote_grading import (
    RemoteGrading,
    RemoteGradingError,
    read_token,
    remote_job,
    run_remote,
    service_url,
)
from tests.harness import free_port

TOKEN = "secret-token-0123456789"
COURSE = "python-foundations"
JOBS = f"/x/services/learnhub/instructor/{COURSE}/jobs"


def client(handler: Callable[[httpx.Request], httpx.Response]) -> RemoteGrading:
    return RemoteGrading(
        "https://hub.example/x/hub/", TOKEN, transport=httpx.MockTransport(handler), sleep=noop
    )


def noop(_: float) -> None:
    pass


def answer(status: int, body: dict[str, Any]) -> httpx.Response:
    return httpx.Response(status, json=body)


def job(state: str, **more: Any) -> dict[str, Any]:
    active = state in ("queued", "running")
    return {"id": 7, "label": "#7 Release ps1", "state": state, "state_label": state,
            "active": active, "summary": "", "error": "", "submissions": [], **more}  # fmt: skip


def test_service_url_takes_the_hub_address_as_the_browser_shows_it() -> None:
    for given in ("https://h.example/x", "https://h.example/x/", "https://h.example/x/hub/",
                  "https://h.example/x/hub/token"):  # fmt: skip
        assert service_url(given) == "https://h.example/x/services/learnhub/"
    with pytest.raises(RemoteGradingError, match="not an http"):
        service_url("h.example")


def test_token_comes_from_the_file_or_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    assert read_token(str(path), {"LEARNHUB_TOKEN": "other"}) == TOKEN
    assert read_token(None, {"LEARNHUB_TOKEN": TOKEN}) == TOKEN
    with pytest.raises(RemoteGradingError, match="hub/token"):
        read_token(None, {})
    with pytest.raises(RemoteGradingError, match="cannot read the token file"):
        read_token(str(tmp_path / "missing"), {})
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(RemoteGradingError, match="is empty"):
        read_token(str(tmp_path / "empty"), {})


def test_command_lines_become_the_dashboards_jobs() -> None:
    assert remote_job("release", "a", force=True).form == {"force": "1"}
    assert remote_job("autograde", "a").form == {"scope": "new"}
    assert remote_job("autograde", "a", regrade_all=True).form == {"scope": "all"}
    regrade = remote_job("autograde", "a", student="learner-b")
    assert (regrade.kind, regrade.form) == ("regrade-one", {"student": "learner-b"})
    assert remote_job("export", "a", exporter="moodle").form == {"exporter": "moodle"}
    assert remote_job("extend", "a", student="b", hours=48).form == {"student": "b", "hours": "48"}
    with pytest.raises(RemoteGradingError, match="--student NAME and --hours N"):
        remote_job("extend", "a", student="b")
    with pytest.raises(RemoteGradingError, match="hub host only"):
        remote_job("worker", "a")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["release", COURSE, "a"], "needs your JupyterHub token"),
        (["release", COURSE], "needs COURSE and ASSIGNMENT"),
        (["release", COURSE, "a", "--from-course"], "--from-course is for the hub host only"),
        (["autograde", COURSE, "a", "--parallel", "2"], "--parallel is for the hub host only"),
        (["worker"], "needs COURSE and ASSIGNMENT"),
    ],
)
def test_remote_argument_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["grader", *argv, "--hub-url", "http://127.0.0.1:9/"], environ={})
    assert status == 2
    assert message in capsys.readouterr().err


def test_token_file_without_hub_url_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["grader", "release", COURSE, "a", "--token-file", "t"], environ={}) == 2
    assert "--token-file goes with --hub-url" in capsys.readouterr().err


def test_an_unreachable_service_is_named_and_the_token_is_not_shown(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"http://127.0.0.1:{free_port()}/"
    argv = ["grader", "release", COURSE, "a", "--hub-url", url]
    assert main(argv, environ={"LEARNHUB_TOKEN": TOKEN}) == 2
    out = capsys.readouterr()
    assert f"cannot reach the LearnHub service at {url}services/learnhub/" in out.err
    assert TOKEN not in out.err + out.out


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (302, None, "did not accept this token (401"),
        (403, None, "may not use the LearnHub service"),
        (403, {"error": "Only instructors"}, f"ask an operator to add you to instructors-{COURSE}"),
        (409, {"error": "A job is running: #3.", "key": "job_busy"}, "409: A job is running: #3."),
        (400, {"error": "No assignment x.", "key": "job_unknown_assignment"}, "400: No assignment"),
        (502, None, "answered 502"),
    ],
)
def test_refusals_say_what_to_do(status: int, body: dict[str, Any] | None, message: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if body is None:
            return httpx.Response(status, headers={"Location": "/x/hub/login"}, text="<html>")
        return answer(status, body)

    with client(handler) as remote, pytest.raises(RemoteGradingError) as refused:
        remote.queue(COURSE, remote_job("release", "a"))
    assert message in str(refused.value)
    assert TOKEN not in str(refused.value)


def test_a_job_is_queued_with_the_token_followed_and_its_export_downloaded(
    tmp_path: Path,
) -> None:
    seen: list[httpx.Request] = []
    polls = iter(
        [
            job("running", submissions=[{"learner": "a", "state_label": "Graded", "score": "1/2"}]),
            job("done", summary="Exported.", download_url="/x/services/learnhub/e.csv"),
        ]
    )

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "POST":
            return answer(202, {"job": job("queued")})
        if request.url.path.endswith(".csv"):
            return httpx.Response(200, text="student,score\na,1\n")
        return answer(200, {"jobs": [next(polls)]})

    lines: list[str] = []
    output = tmp_path / "grades.csv"
    with client(handler) as remote:
        status = run_remote(
            remote, COURSE, remote_job("export", "ps1"), report=lines.append, output=str(output)
        )
    assert status == 0
    assert output.read_text() == "student,score\na,1\n"
    post = seen[0]
    assert post.url.path == JOBS and post.headers["Authorization"] == f"token {TOKEN}"
    assert post.headers["Accept-Language"] == "en"
    assert dict(httpx.QueryParams(post.content.decode())) == {
        "kind": "export", "assignment": "ps1", "exporter": "csv"}  # fmt: skip
    assert any(line.startswith("a ") and "Graded 1/2" in line for line in lines), lines
    assert "Exported." in lines and TOKEN not in json.dumps(lines)


def test_a_failed_job_exits_non_zero_with_its_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return answer(202, {"job": job("queued")})
        return answer(200, {"jobs": [job("failed", error="nbgrader said no")]})

    lines: list[str] = []
    with client(handler) as remote:
        assert run_remote(remote, COURSE, remote_job("collect", "a"), report=lines.append) == 1
    assert "nbgrader said no" in lines[-1]


def test_interrupting_the_command_leaves_the_job_running() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return answer(202, {"job": job("queued")})

    def interrupt(_: float) -> None:
        raise KeyboardInterrupt

    lines: list[str] = []
    remote = RemoteGrading(
        "https://hub.example/x/", TOKEN, transport=httpx.MockTransport(handler), sleep=interrupt
    )
    with remote:
        assert run_remote(remote, COURSE, remote_job("collect", "a"), report=lines.append) == 130
    assert "it keeps running on the hub" in lines[-1]


def test_an_export_link_to_another_site_does_not_get_the_token() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, text="x")

    with client(handler) as remote, pytest.raises(RemoteGradingError, match="another site"):
        remote.download(COURSE, job("done", download_url="https://evil.example/grades.csv"))
    assert seen == []
