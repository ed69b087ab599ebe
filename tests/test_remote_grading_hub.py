"""`learnhub grader release … --hub-url` with an instructor's own token, through a real hub.

One hub (local spawner: a release needs no course server and no sandbox) with its LearnHub
service and its grading worker. Tokens are made as the Hub's token page makes them (the Hub's
API, default scopes); the CLI runs in this process against the hub's public URL, so the
requests go through the proxy, the Hub's token check and the service's authorisation.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from grader.exchange.storage import ExchangeStorage
from hub.cli import main
from hub.grading_jobs import JobStore, course_jobs
from hub.store import Database, GradingJob, utcnow
from tests.harness import HubProcess, hub_settings

COURSE = "python-foundations"
ASSIGNMENT = "ps1-data-model"


@pytest.fixture(scope="module")
def hub(courses_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    workdir = tmp_path_factory.mktemp("remote-grading-hub")
    process = HubProcess(
        workdir=workdir, settings=hub_settings(workdir, courses_dir=courses_dir, backend="local")
    )
    process.start()
    try:
        yield process
    finally:
        process.stop(discard=True)


@pytest.fixture(scope="module")
def db(hub: HubProcess) -> Iterator[Database]:
    database = Database(f"sqlite:///{hub.learnhub_db_path}")
    try:
        yield database
    finally:
        database.dispose()


def token_file(hub: HubProcess, user: str, tmp_path: Path) -> Path:
    """A file holding a new token of ``user`` with the token page's default scopes."""
    made = hub.api("POST", "/users", json={"usernames": [user]})
    assert made.status_code in (201, 409), made.text
    response = hub.api("POST", f"/users/{user}/tokens", json={"note": "learnhub grader"})
    assert response.status_code == 201, response.text
    path = tmp_path / f"{user}.token"
    path.write_text(response.json()["token"])
    return path


def grader(hub: HubProcess, action: str, token: Path) -> int:
    argv = ["grader", action, COURSE, ASSIGNMENT, "--hub-url", hub.url, "--token-file", str(token)]
    return main(argv, environ={})


def test_an_instructors_token_releases_through_the_worker(
    hub: HubProcess, db: Database, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = token_file(hub, "demo-instructor", tmp_path)
    assert grader(hub, "release", token) == 0, capsys.readouterr().err
    out = capsys.readouterr()
    assert "Released: learners can fetch it." in out.err and " done" in out.err, out.err
    assert token.read_text() not in out.err + out.out
    [job] = course_jobs(db, COURSE)
    assert (job["kind"], job["state"], job["requested_by"]) == (
        "release",
        "done",
        "demo-instructor",
    )
    storage = ExchangeStorage(hub.data_dir / "service" / "exchange", db)
    try:
        assert storage.released_archive(COURSE, ASSIGNMENT), "no release in the exchange"
    finally:
        storage.close()


def test_a_learners_token_is_refused_and_nothing_is_queued(
    hub: HubProcess, db: Database, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = len(course_jobs(db, COURSE))
    assert grader(hub, "collect", token_file(hub, "demo-learner", tmp_path)) == 2
    err = capsys.readouterr().err
    assert f"ask an operator to add you to instructors-{COURSE}" in err, err
    assert len(course_jobs(db, COURSE)) == before


def test_a_bad_token_is_refused(
    hub: HubProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.token"
    bad.write_text("not-a-token-of-this-hub")
    assert grader(hub, "collect", bad) == 2
    err = capsys.readouterr().err
    assert "did not accept this token (401" in err and "/hub/token" in err, err
    assert "not-a-token-of-this-hub" not in err


def test_a_second_job_while_one_runs_is_refused_with_409(
    hub: HubProcess, db: Database, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A job a live worker is running (a process of this host whose command line says worker,
    # as grader/worker.py checks): it stays running for as long as this test needs.
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "worker"])
    now = utcnow()
    try:
        with db.transaction() as session:
            running = GradingJob(
                course_id=COURSE, assignment_id=ASSIGNMENT, kind="collect", args=json.dumps({}),
                requested_by="demo-instructor", state="running", progress="{}", attempts=1,
                worker=f"{socket.gethostname()}:{alive.pid}", created_at=now, started_at=now,
                updated_at=now,
            )  # fmt: skip
            session.add(running)
            session.flush()
            running_id = running.id
        before = len(course_jobs(db, COURSE))
        assert grader(hub, "release", token_file(hub, "demo-instructor", tmp_path)) == 2
        err = capsys.readouterr().err
        assert "409:" in err and f"#{running_id}" in err and "Wait until it ends" in err, err
        assert len(course_jobs(db, COURSE)) == before
    finally:
        JobStore(db).finish(running_id, "failed", "the test is over")
        alive.kill()
        alive.wait()
