"""Grading from the instructor dashboard (issue #13, item 1), through the real stack.

One hub (the shared `docker_hub` fixture) with its own `grading-worker` managed service: an
instructor signs in to the Hub and the service like a person, queues jobs with the dashboard's
forms (their own login cookie and XSRF token), and the worker (root, beside the Hub) runs them
with real nbgrader in real sandboxes. Learners' submissions go into the exchange through its
storage, as in test_grader_cli.py. The tests run in order on the one hub.
"""

from __future__ import annotations

import csv
import io
import json
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import nbformat
import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from grader.exchange.storage import ExchangeStorage
from harness.archives import targz, untargz
from hub.store import Database, GradingJob, utcnow
from tests.grader.test_grader_cli import give_to_service
from tests.harness import Browser, HubProcess, browser

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("report_on_failure")]

COURSE = "python-foundations"
OTHER_COURSE = "algorithms-in-python"
ASSIGNMENT = "ps1-data-model"
NOTEBOOK = f"{ASSIGNMENT}.ipynb"
SERVICE = "services/learnhub/"
DASHBOARD = f"{SERVICE}instructor/{COURSE}"
JOBS = f"{DASHBOARD}/jobs"
PASSWORD = "learnhub-demo"
OTHER_TEACHER = "jobs-other-teacher"
OTHER_PASSWORD = "teaches-another-course"
JSON = {"Accept": "application/json"}
#: What one code cell of a submission does to blow its sandbox's memory limit.
MEMORY_BOMB = "hog = [b'x' * 10**7 for _ in range(10**4)]"


def sign_in(b: Browser, user: str, password: str = PASSWORD) -> None:
    """Log in to the hub, then complete the service's OAuth hand-shake."""
    assert b.login(user, password).status_code == 200
    page = b.client.get(SERVICE + "login", params={"next": b.hub_path()[:-4] + SERVICE})
    assert page.status_code == 200 and f'<span class="me-1">{user}</span>' in page.text


def xsrf(b: Browser, page: str = SERVICE) -> str:
    match = re.search(r'name="_xsrf" value="([^"]+)"', b.client.get(page).text)
    assert match, f"no _xsrf field on {page}"
    return match.group(1)


@pytest.fixture(scope="module")
def db(docker_hub: HubProcess) -> Iterator[Database]:
    database = Database(f"sqlite:///{docker_hub.learnhub_db_path}")
    try:
        yield database
    finally:
        database.dispose()


@pytest.fixture(scope="module")
def storage(docker_hub: HubProcess, db: Database) -> Iterator[ExchangeStorage]:
    store = ExchangeStorage(docker_hub.data_dir / "service" / "exchange", db)
    try:
        yield store
    finally:
        store.close()


@pytest.fixture(scope="module")
def instructor(docker_hub: HubProcess) -> Iterator[Browser]:
    with browser(docker_hub) as b:
        sign_in(b, "demo-instructor")
        yield b


def submit(storage: ExchangeStorage, student: str, code: str = "") -> None:
    """``student`` hands in the released notebook, with one code cell added when given."""
    files = untargz(storage.released_archive(COURSE, ASSIGNMENT))
    if code:
        nb = nbformat.reads(files[NOTEBOOK].decode(), as_version=4)
        nb.cells.append(nbformat.v4.new_code_cell(code))
        files[NOTEBOOK] = nbformat.writes(nb).encode()
    storage.submit(COURSE, ASSIGNMENT, student, targz(files))
    give_to_service(storage.root)


def queue(b: Browser, kind: str, **fields: str) -> httpx.Response:
    """Press a dashboard button: the form POST with the page's XSRF token."""
    data = {"_xsrf": xsrf(b, DASHBOARD), "kind": kind, "assignment": ASSIGNMENT, **fields}
    return b.client.post(JOBS, data=data, follow_redirects=False)


def jobs(b: Browser) -> list[dict[str, Any]]:
    response = b.client.get(JOBS, headers=JSON)
    assert response.status_code == 200, response.text
    listed: list[dict[str, Any]] = response.json()["jobs"]
    return listed


def wait_for(b: Browser, job_id: int, timeout: float = 300) -> dict[str, Any]:
    """The job once it ended (done, failed or interrupted), as the dashboard's JSON shows it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = next(j for j in jobs(b) if j["id"] == job_id)
        if not job["active"]:
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} still {job['state']} after {timeout} s: {job}")


def newest(b: Browser) -> dict[str, Any]:
    return jobs(b)[0]


def by_learner(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["learner"]: s for s in job["submissions"]}


def test_release_then_autograde_from_the_dashboard_with_progress_per_submission(
    instructor: Browser, storage: ExchangeStorage
) -> None:
    released = queue(instructor, "release")
    assert released.status_code == 303, released.text
    assert released.headers["Location"].endswith(f"instructor/{COURSE}#learnhub-jobs")
    job = wait_for(instructor, newest(instructor)["id"])
    assert job["state"] == "done", job
    assert job["summary"] == "Released: learners can fetch it."

    submit(storage, "learner-a")
    submit(storage, "learner-b")
    submit(storage, "learner-m", MEMORY_BOMB)
    assert queue(instructor, "collect").status_code == 303
    collect = wait_for(instructor, newest(instructor)["id"])
    assert collect["state"] == "done" and collect["summary"] == "3 submissions collected.", collect

    assert queue(instructor, "autograde", scope="new").status_code == 303
    autograde = newest(instructor)
    # The course's one slot is taken: a second request is refused and names the job.
    again = instructor.client.post(
        JOBS,
        data={"_xsrf": xsrf(instructor, DASHBOARD), "kind": "collect", "assignment": ASSIGNMENT},
        headers=JSON,
    )
    assert again.status_code == 409, again.text
    assert again.json()["active_job"] == autograde["id"]
    assert f"#{autograde['id']}" in again.json()["error"]
    page = instructor.client.post(
        JOBS, data={"_xsrf": xsrf(instructor, DASHBOARD), "kind": "export",
                    "assignment": ASSIGNMENT},
    )  # fmt: skip
    assert page.status_code == 409 and "A job is running" in page.text

    done = wait_for(instructor, autograde["id"])
    assert done["state"] == "done", done
    learners = by_learner(done)
    assert learners["learner-a"]["state"] == "graded" and learners["learner-a"]["score"] == "0/10"
    assert learners["learner-b"]["state"] == "graded"
    # A submission that failed says why, per learner.
    assert learners["learner-m"]["state"] == "limit", learners
    assert learners["learner-m"]["reason"] == "memory"

    # The dashboard shows the same after a reload, rendered by the server, with the poller's
    # script allowed by its nonce only.
    dashboard = instructor.client.get(DASHBOARD)
    assert f'data-job-id="{done["id"]}" data-state="done"' in dashboard.text
    assert 'data-learner="learner-m" data-state="limit"' in dashboard.text
    nonce = re.search(r'<script nonce="([^"]+)">', dashboard.text)
    assert (
        nonce
        and f"script-src 'nonce-{nonce.group(1)}'" in dashboard.headers["Content-Security-Policy"]
    )
    assert 'id="learnhub-formgrader"' in dashboard.text


def test_export_is_downloaded_by_instructors_of_the_course_only(
    docker_hub: HubProcess, instructor: Browser
) -> None:
    assert queue(instructor, "export").status_code == 303
    job = wait_for(instructor, newest(instructor)["id"])
    assert job["state"] == "done" and job["download_url"], job
    csv_url = job["download_url"].split(SERVICE, 1)[1]
    download = instructor.client.get(SERVICE + csv_url)
    assert download.status_code == 200
    assert download.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(download.text)))
    assert {r["student"] for r in rows} == {"learner-a", "learner-b", "learner-m"}

    # Another course's instructor and a learner of this course: 403 for everything.
    with browser(docker_hub) as b:
        assert b.signup(OTHER_TEACHER, OTHER_PASSWORD).status_code == 200
        assert b.login(OTHER_TEACHER, OTHER_PASSWORD).status_code == 200  # the Hub's user now
    response = docker_hub.api(
        "POST", f"/groups/instructors-{OTHER_COURSE}/users", json={"users": [OTHER_TEACHER]}
    )
    assert response.status_code == 200, response.text
    for user, password in (("demo-learner", PASSWORD), (OTHER_TEACHER, OTHER_PASSWORD)):
        with browser(docker_hub) as b:
            sign_in(b, user, password)
            token = xsrf(b)
            enqueue = b.client.post(
                JOBS, data={"_xsrf": token, "kind": "collect", "assignment": ASSIGNMENT}
            )
            assert enqueue.status_code == 403, (user, enqueue.text)
            assert b.client.get(JOBS, headers=JSON).status_code == 403
            assert b.client.get(SERVICE + csv_url).status_code == 403
            assert "learner-a" not in b.client.get(SERVICE + csv_url).text
    # The other instructor does reach their own course's jobs: the 403 is about the course.
    with browser(docker_hub) as b:
        sign_in(b, OTHER_TEACHER, OTHER_PASSWORD)
        own = b.client.get(f"{SERVICE}instructor/{OTHER_COURSE}/jobs", headers=JSON)
        assert own.status_code == 200, own.text


def test_forged_requests_are_refused_by_the_service_and_forged_rows_by_the_worker(
    instructor: Browser, db: Database
) -> None:
    before = len(jobs(instructor))
    for fields in (
        {"kind": "autograde", "assignment": "../x"},
        {"kind": "shell", "assignment": ASSIGNMENT},
        {"kind": "autograde", "assignment": ASSIGNMENT, "arg_cmd": "rm -rf /"},
        {"kind": "extend", "assignment": ASSIGNMENT, "student": "../root", "hours": "1"},
        {"kind": "extend", "assignment": ASSIGNMENT, "student": "learner-a", "hours": "1e9"},
    ):
        refused = instructor.client.post(
            JOBS, data={"_xsrf": xsrf(instructor, DASHBOARD), **fields}, headers=JSON
        )
        assert refused.status_code == 400, (fields, refused.text)
        assert refused.json()["key"].startswith("job_"), refused.text
    assert len(jobs(instructor)) == before, "a refused request left a row"

    # Rows written straight into the database (as a compromised service could): the schema
    # refuses an unknown kind, the worker refuses the rest, and runs nothing.
    now = utcnow()
    row = dict(requested_by="mallory", state="queued", progress="{}", attempts=0,
               created_at=now, updated_at=now, course_id=COURSE)  # fmt: skip
    with pytest.raises(IntegrityError), db.transaction() as session:
        session.add(GradingJob(kind="shell", assignment_id=ASSIGNMENT, args="{}", **row))
    for assignment, args in (
        ("../../../etc", "{}"),
        (ASSIGNMENT, json.dumps({"all": True, "cmd": "touch /tmp/pwned"})),
        (ASSIGNMENT, json.dumps({"all": "yes"})),
    ):
        with db.transaction() as session:
            forged = GradingJob(kind="autograde", assignment_id=assignment, args=args, **row)
            session.add(forged)
            session.flush()
            forged_id = forged.id
        job = wait_for(instructor, forged_id, timeout=60)
        assert job["state"] == "failed", job
        assert job["error"].startswith("refused by the worker"), job
        assert job["submissions"] == [] and job["summary"] == "", "the worker ran something"


def test_a_job_left_running_by_a_dead_worker_is_resumed(
    instructor: Browser, db: Database, storage: ExchangeStorage
) -> None:
    # A new submission, collected: the interrupted autograde has it still to grade.
    submit(storage, "learner-c")
    collect = queue(instructor, "collect")
    assert collect.status_code == 303
    assert wait_for(instructor, newest(instructor)["id"])["state"] == "done"
    # A worker claimed an autograde, reported learner-a, and was killed (kill -9).
    dead = subprocess.Popen(["sleep", "30"])
    dead.kill()
    dead.wait()
    now = utcnow()
    progress = {"submissions": {"learner-a": {"state": "graded", "score": 0, "max_score": 10}}}
    with db.transaction() as session:
        job = GradingJob(
            course_id=COURSE, assignment_id=ASSIGNMENT, kind="autograde",
            args=json.dumps({"all": False}), requested_by="demo-instructor", state="running",
            progress=json.dumps(progress), attempts=1, worker=f"{socket.gethostname()}:{dead.pid}",
            created_at=now, started_at=now, updated_at=now,
        )  # fmt: skip
        session.add(job)
        session.flush()
        job_id = job.id
    resumed = wait_for(instructor, job_id)
    assert resumed["state"] == "done", resumed
    assert any("attempt 2" in note for note in resumed["notes"]), resumed
    learners = by_learner(resumed)
    assert learners["learner-c"]["state"] == "graded", learners
    # What the first worker had graded stays as it reported; nothing else was graded again.
    assert learners["learner-a"]["state"] == "graded"
    assert learners["learner-b"]["state"] == "skipped"
    with db.transaction() as session:
        row = session.scalars(sa.select(GradingJob).where(GradingJob.id == job_id)).one()
        assert row.attempts == 2 and row.worker != f"{socket.gethostname()}:{dead.pid}"


def test_extension_and_one_learners_regrade_from_the_dashboard(instructor: Browser) -> None:
    assert queue(instructor, "extend", student="learner-b", hours="48").status_code == 303
    extended = wait_for(instructor, newest(instructor)["id"], timeout=120)
    assert extended["state"] == "done" and extended["summary"] == "learner-b has 48 extra hours."

    assert queue(instructor, "regrade-one", student="learner-b").status_code == 303
    regraded = wait_for(instructor, newest(instructor)["id"])
    assert regraded["state"] == "done", regraded
    assert {s["learner"]: s["state"] for s in regraded["submissions"]} == {"learner-b": "graded"}

    assert queue(instructor, "regrade-one", student="nobody-here").status_code == 303
    unknown = wait_for(instructor, newest(instructor)["id"], timeout=120)
    assert (
        unknown["state"] == "failed"
        and "'nobody-here' has no collected submission" in (unknown["error"])
    ), unknown
