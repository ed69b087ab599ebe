"""Grading jobs without Docker: the allow-list, one active job per course, claims, recovery.

The end-to-end flow (dashboard, real worker, sandboxes) is tests/grader/test_grading_jobs.py.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from grader.worker import recover, run_job, worker_alive
from hub.courses import Catalog
from hub.grading_jobs import (
    MAX_ATTEMPTS,
    JobConflict,
    JobRefused,
    JobStore,
    check_request,
    course_jobs,
    enqueue,
)
from hub.settings import load_settings
from hub.store import Database, GradingJob, upgrade, utcnow

ROOT = Path(__file__).resolve().parent.parent
COURSE = "python-foundations"
ASSIGNMENT = "ps1-data-model"


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load(ROOT / "courses")


@pytest.fixture
def db(tmp_path: Path) -> Database:
    url = f"sqlite:///{tmp_path / 'learnhub.sqlite'}"
    upgrade(url)
    return Database(url)


@pytest.mark.parametrize(
    ("course", "kind", "assignment", "args", "key"),
    [
        ("no-such-course", "collect", ASSIGNMENT, {}, "job_unknown_course"),
        (COURSE, "shell", ASSIGNMENT, {}, "job_unknown_kind"),
        (COURSE, "autograde", "../x", {}, "job_unknown_assignment"),
        (COURSE, "autograde", "/etc", {}, "job_unknown_assignment"),
        (COURSE, "autograde", ASSIGNMENT, {"cmd": "rm -rf /"}, "job_bad_args"),
        (COURSE, "autograde", ASSIGNMENT, {"all": "yes"}, "job_bad_args"),
        (COURSE, "autograde", ASSIGNMENT, [], "job_bad_args"),
        (COURSE, "regrade-one", ASSIGNMENT, {}, "job_missing_args"),
        (COURSE, "regrade-one", ASSIGNMENT, {"student": "../root"}, "job_bad_student"),
        (COURSE, "extend", ASSIGNMENT, {"student": "a", "hours": True}, "job_bad_hours"),
        (COURSE, "extend", ASSIGNMENT, {"student": "a", "hours": float("nan")}, "job_bad_hours"),
        (COURSE, "extend", ASSIGNMENT, {"student": "a", "hours": 1e9}, "job_bad_hours"),
        (COURSE, "export", ASSIGNMENT, {"exporter": "grader.export.Evil"}, "job_bad_exporter"),
        (COURSE, "export", ASSIGNMENT, {"exporter": ["csv"]}, "job_bad_exporter"),
    ],
)
def test_requests_outside_the_allow_list_are_refused(
    catalog: Catalog, course: str, kind: str, assignment: str, args: Any, key: str
) -> None:
    with pytest.raises(JobRefused) as refused:
        check_request(catalog, course, kind, assignment, args)
    assert refused.value.key == key


def test_allowed_requests_keep_only_checked_values(catalog: Catalog) -> None:
    request = check_request(
        catalog, COURSE, "extend", ASSIGNMENT, {"student": "learner-a", "hours": 24}
    )
    assert request.args == {"student": "learner-a", "hours": 24.0}
    assert check_request(catalog, COURSE, "export", ASSIGNMENT, {"exporter": "moodle"}).args == {
        "exporter": "moodle"
    }
    assert check_request(catalog, COURSE, "autograde", ASSIGNMENT, {"all": True}).args == {
        "all": True
    }


def test_one_active_job_per_course(catalog: Catalog, db: Database) -> None:
    request = check_request(catalog, COURSE, "collect", ASSIGNMENT, {})
    first = enqueue(db, request, "demo-instructor")
    with pytest.raises(JobConflict) as busy:
        enqueue(db, request, "someone-else")
    assert busy.value.active["id"] == first["id"]
    # The index itself refuses a second active row, whoever writes it.
    now = utcnow()
    with pytest.raises(IntegrityError), db.transaction() as session:
        session.add(
            GradingJob(
                course_id=COURSE,
                assignment_id=ASSIGNMENT,
                kind="collect",
                args="{}",
                requested_by="x",
                state="running",
                progress="{}",
                attempts=0,
                created_at=now,
                updated_at=now,
            )
        )
    # Another course has its own slot; a finished job frees the course's.
    other = check_request(catalog, "algorithms-in-python", "collect", "ps1-search-sort", {})
    enqueue(db, other, "demo-instructor")
    store = JobStore(db)
    claimed = store.claim("host:1")
    assert claimed is not None and claimed["id"] == first["id"]
    store.finish(first["id"], "done")
    assert enqueue(db, request, "demo-instructor")["state"] == "queued"


def test_a_job_is_claimed_once(catalog: Catalog, db: Database) -> None:
    enqueue(db, check_request(catalog, COURSE, "collect", ASSIGNMENT, {}), "demo-instructor")
    store = JobStore(db)
    assert store.claim("host:1") is not None
    assert store.claim("host:2") is None


def test_dead_workers_jobs_are_queued_again_then_given_up(catalog: Catalog, db: Database) -> None:
    enqueue(db, check_request(catalog, COURSE, "collect", ASSIGNMENT, {}), "demo-instructor")
    store = JobStore(db)
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "worker"])
    dead = subprocess.Popen(["true"])
    dead.wait()
    host = socket.gethostname()
    try:
        job = store.claim(f"{host}:{alive.pid}")
        assert job is not None
        assert worker_alive(f"{host}:{alive.pid}", "")
        assert recover(store, "me") == [], "a live worker's job was taken"
        store.requeue(job["id"], "handed over")  # attempt 1 ended; queued again
        states = []
        for _attempt in range(2, MAX_ATTEMPTS + 1):
            assert store.claim(f"{host}:{dead.pid}") is not None
            assert recover(store, "me") == [job["id"]]
            states.append(course_jobs(db, COURSE)[0]["state"])
        assert states == ["queued"] * (MAX_ATTEMPTS - 2) + ["interrupted"]
        assert "not tried again" in course_jobs(db, COURSE)[0]["error"]
    finally:
        alive.kill()
        alive.wait()


def test_a_reused_pid_does_not_hide_a_dead_workers_job(catalog: Catalog, db: Database) -> None:
    """The pid of a worker that died can be given to any later process, here one whose command
    line says "worker" (as celery's or gunicorn's do). It started after the job was claimed, so
    it is not the worker that claimed it: the job is queued again, not left running forever."""
    enqueue(db, check_request(catalog, COURSE, "collect", ASSIGNMENT, {}), "demo-instructor")
    store = JobStore(db)
    unrelated = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", "celery-worker"]
    )
    try:
        worker = f"{socket.gethostname()}:{unrelated.pid}"
        job = store.claim(worker)
        assert job is not None
        # The claim as the dead worker made it, an hour ago, when that pid was its own.
        an_hour_ago = utcnow() - timedelta(hours=1)
        with db.transaction() as session:
            session.execute(
                sa.update(GradingJob)
                .where(GradingJob.id == job["id"])
                .values(started_at=an_hour_ago, updated_at=an_hour_ago)
            )
        assert recover(store, "me") == [job["id"]]
        assert course_jobs(db, COURSE)[0]["state"] == "queued"
    finally:
        unrelated.kill()
        unrelated.wait()


def test_the_worker_refuses_a_forged_row_and_runs_nothing(
    tmp_path: Path, catalog: Catalog, db: Database
) -> None:
    # Settings that point at the repository's courses (what the worker re-reads per job).
    config = tmp_path / "learnhub.yaml"
    config.write_text(f"courses_dir: {ROOT / 'courses'}\nhub:\n  data_dir: {tmp_path / 'var'}\n")
    settings = load_settings(config, {})
    now = utcnow()
    with db.transaction() as session:
        session.add(
            GradingJob(
                course_id=COURSE,
                assignment_id=ASSIGNMENT,
                kind="autograde",
                args=json.dumps({"all": True, "cmd": "touch /tmp/pwned"}),
                requested_by="mallory",
                state="queued",
                progress="{}",
                attempts=0,
                created_at=now,
                updated_at=now,
            )
        )
    store = JobStore(db)
    job = store.claim("host:1")
    assert job is not None

    def must_not_run(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("the worker ran a refused job")

    assert run_job(settings, store, job, token="t", course_factory=must_not_run) == "failed"
    view = course_jobs(db, COURSE)[0]
    assert view["state"] == "failed" and view["error"].startswith("refused by the worker")
    assert view["progress"] == {}


def test_every_job_message_is_in_english_and_chinese_with_the_same_placeholders() -> None:
    import string

    from hub.i18n import MESSAGES
    from hub.store.job_models import JOB_KINDS, JOB_STATES

    def fields(text: str) -> set[str]:
        return {name for _, name, _, _ in string.Formatter().parse(text) if name}

    used = {f"job_kind_{k}" for k in JOB_KINDS} | {f"job_state_{s}" for s in JOB_STATES}
    used |= {key for key in MESSAGES if key.startswith(("job_", "jobs_", "grading_", "sub_state_"))}
    for key in used:
        texts = MESSAGES[key]
        assert set(texts) == {"en", "zh-CN"}, key
        assert fields(texts["en"]) == fields(texts["zh-CN"]), key


def test_a_forged_row_that_is_not_json_does_not_break_the_jobs_panel(db: Database) -> None:
    from hub.i18n import translator
    from hub.service.grading import display_job

    now = utcnow()
    with db.transaction() as session:
        session.add(
            GradingJob(
                course_id=COURSE,
                assignment_id=ASSIGNMENT,
                kind="autograde",
                args="{not json",
                requested_by="mallory",
                state="failed",
                progress=json.dumps(
                    {"submissions": {"x": {"state": "graded", "score": "9", "max_score": []}}}
                ),
                attempts=1,
                created_at=now,
                updated_at=now,
            )
        )
    [job] = course_jobs(db, COURSE)
    assert job["args"] == {}
    shown = display_job(job, translator("zh-CN"), "/services/learnhub/")
    assert shown["state_label"] == "失败"
    assert shown["submissions"] == [
        {"learner": "x", "state": "graded", "state_label": "已评分", "score": "", "reason": ""}
    ]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_the_worker_stops_quietly_on_the_hubs_stop_signals(
    tmp_path: Path, db: Database, signum: int
) -> None:
    # JupyterHub stops a managed service with SIGINT first, then SIGTERM: either must end the
    # worker with status 0 and no traceback in the operator's log.
    config = tmp_path / "learnhub.yaml"
    config.write_text(f"courses_dir: {ROOT / 'courses'}\nhub:\n  data_dir: {tmp_path / 'var'}\n")
    script = (
        "import logging, sys\n"
        "logging.basicConfig(level=logging.INFO)\n"
        "from grader.worker import serve\n"
        "from hub.grading_jobs import JobStore\n"
        "from hub.settings import load_settings\n"
        "from pathlib import Path\n"
        "from hub.store import Database\n"
        f"serve(load_settings(Path({str(config)!r}), {{}}), token='t', poll_seconds=0.2,\n"
        f"      rows=JobStore(Database({db.url!r})))\n"
    )
    worker = subprocess.Popen(
        [sys.executable, "-c", script], cwd=ROOT, stderr=subprocess.PIPE, text=True
    )
    assert worker.stderr is not None
    seen: list[str] = []
    try:
        for line in worker.stderr:
            seen.append(line)
            if "grading worker ready" in line:
                break
        assert worker.poll() is None, "".join(seen)
        worker.send_signal(signum)
        seen.append(worker.stderr.read())
        status = worker.wait(timeout=30)
    finally:
        worker.kill()
    log = "".join(seen)
    assert status == 0, log
    assert "Traceback" not in log
