"""The grading worker's process: started as the Hub starts it, stopped as the Hub (or Ctrl-C on
`learnhub demo`) stops it, and lean to import. No Docker: the jobs here need no sandbox.

The worker's jobs themselves are tests/test_grading_jobs.py (rows) and
tests/grader/test_grading_jobs.py (the dashboard, real sandboxes).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from grader.autograde import GradeResult, autograde_submissions
from grader.worker import run_job
from harness.hub import let_service_user_through
from hub.courses import Catalog
from hub.grading_jobs import JobStore, check_request, course_jobs, enqueue
from hub.hubconfig import grading_worker_service
from hub.settings import Settings, load_settings
from hub.store import Database, GradingJob, upgrade
from tests.harness import ROOT

COURSE = "python-foundations"
ASSIGNMENT = "ps1-data-model"
#: Libraries the worker imported through `hub.cli` before it had its own entry point, and
#: needs for no job (nbgrader and rich: only the jobs and the CLI's progress bars do).
NOT_FOR_THE_WORKER = (
    "alembic",
    "docker",
    "grader.course",
    "hub.access",
    "hub.cli",
    "nbgrader",
    "rich",
    "stripe",
    "tornado",
)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """A settings file like the other grading tests' (the repository's courses, a data folder
    of its own), at the log level an operator gets."""
    config = tmp_path / "learnhub.yaml"
    config.write_text(
        f"courses_dir: {ROOT / 'courses'}\nhub:\n  data_dir: {tmp_path / 'var'}\n"
        "  log_level: INFO\n"
    )
    # As root the worker's database calls run as hub.service_user, through these folders.
    let_service_user_through(tmp_path)
    return load_settings(config, {}, process="worker")


def start_as_the_hub_does(settings: Settings) -> subprocess.Popen[str]:
    """The managed service `grading-worker`: the Hub's command line, folder and environment,
    in a session of its own so that a signal can reach its whole process group (Ctrl-C in the
    terminal of `learnhub demo`)."""
    service = grading_worker_service(settings)
    env = {"PATH": os.environ["PATH"], **service["environment"], "JUPYTERHUB_API_TOKEN": "t"}
    return subprocess.Popen(
        service["command"],
        cwd=service["cwd"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        # A test run may have inherited SIGINT ignored (a background shell job); the Hub's
        # services and a terminal's processes have it at its default.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def wait_until(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} after {timeout} s")
        time.sleep(0.01)


def importing_pydantic(pid: int) -> bool:
    """Whether the process has pydantic's compiled core mapped: it is past its signal handlers
    and in the middle of the imports that take seconds under load."""
    try:
        return "_pydantic_core" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


@pytest.mark.parametrize("when", ["once ready", "while it starts"])
def test_the_hubs_worker_stops_quietly_on_ctrl_c(settings: Settings, when: str) -> None:
    assert grading_worker_service(settings)["command"][1:] == ["-m", "hub.grading_worker"]
    worker = start_as_the_hub_does(settings)
    assert worker.stderr is not None
    seen: list[str] = []
    try:
        if when == "once ready":
            for line in worker.stderr:
                seen.append(line)
                if "grading worker ready" in line:
                    break
        else:
            wait_until(lambda: importing_pydantic(worker.pid), "importing pydantic")
        assert worker.poll() is None, "".join(seen)
        # Ctrl-C: SIGINT to every process of the group (the worker's database child too).
        os.killpg(worker.pid, signal.SIGINT)
        seen.append(worker.stderr.read())
        status = worker.wait(timeout=60)
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
    log = "".join(seen)
    assert status == 0, log
    assert "Traceback" not in log and "KeyboardInterrupt" not in log, log
    [stopped] = [line for line in log.splitlines() if "grading worker stopped" in line]
    assert " INFO learnhub.grader.worker " in stopped and "outcome=stopped" in stopped, stopped
    # No process of the group is left (the database child ends with its parent).
    with pytest.raises(ProcessLookupError):
        os.killpg(worker.pid, 0)


def test_the_worker_imports_none_of_the_cli_s_libraries(settings: Settings) -> None:
    # The whole idle path: settings, logging, the data folder, the database child, a poll.
    code = (
        "import sys\n"
        "from hub.grading_worker import main\n"
        f"status = main(['--config', {settings.source!r}, '--once'],"
        " {'JUPYTERHUB_API_TOKEN': 't'})\n"
        "print(' '.join(sorted(sys.modules)))\n"
        "sys.exit(status)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    ran, modules = out.stdout.splitlines()
    assert ran == "ran 0 grading jobs", out.stdout
    assert "grader.worker" in modules.split()  # it did run the worker
    heavy = [
        m
        for m in modules.split()
        if m.startswith(NOT_FOR_THE_WORKER)
        and (m in NOT_FOR_THE_WORKER or m.rpartition(".")[0].startswith(NOT_FOR_THE_WORKER))
    ]
    assert heavy == [], heavy


class StoppedCourse:
    """A course whose autograde grades learner-a, then the worker is told to stop."""

    def __init__(self, stopping: Any) -> None:
        self.stopping = stopping

    def plan_autograde(self, assignment: str, **_: Any) -> Any:
        return SimpleNamespace(skipped=[], to_grade={"learner-a": "d1", "learner-b": "d2"})

    def autograde(self, assignment: str, plan: Any, *, progress: Any) -> list[GradeResult]:
        result = GradeResult("learner-a", assignment, 1.0, 2.0, "ok", "", "")
        self.stopping.set()  # SIGINT while learner-a was in its sandbox
        progress(result)
        raise AssertionError("the job went on after the worker was told to stop")


def test_an_autograde_in_hand_is_released_at_the_next_submission(
    tmp_path: Path, settings: Settings
) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.sqlite'}"
    upgrade(url)
    db = Database(url)
    catalog = Catalog.load(ROOT / "courses")
    request = check_request(catalog, COURSE, "autograde", ASSIGNMENT, {})
    enqueue(db, request, "demo-instructor")
    store = JobStore(db)
    job = store.claim("host:1")
    assert job is not None
    stopping = threading.Event()

    state = run_job(
        settings,
        store,
        job,
        token="t",
        course_factory=lambda *_a, **_k: StoppedCourse(stopping),
        stopping=stopping,
    )
    assert state == "released"
    [view] = course_jobs(db, COURSE)
    # Queued again for the next worker, with what was graded kept; the stop was not the job's
    # fault, so it does not count toward the attempts after which a job is given up.
    assert view["state"] == "queued" and view["attempts"] == 0, view
    assert view["progress"]["submissions"]["learner-a"]["state"] == "graded"
    assert view["progress"]["submissions"]["learner-b"] == {"state": "queued"}
    with db.transaction() as session:
        assert session.get(GradingJob, view["id"]).worker is None  # type: ignore[union-attr]
    db.dispose()


def test_a_stopped_autograde_starts_no_further_sandbox(monkeypatch: pytest.MonkeyPatch) -> None:
    students = [f"learner-{i}" for i in range(20)]
    started: list[str] = []
    # learner-0 ends at once; any other waits until the pool was shut down (and, with the
    # fix, its queue emptied), so what ran after the stop is exactly what was not cancelled.
    shut_down = threading.Event()

    def grade(_config: Any, assignment: str, student: str, **_: Any) -> GradeResult:
        started.append(student)
        if student != students[0]:
            assert shut_down.wait(timeout=60)
        return GradeResult(student, assignment, 1.0, 1.0, "ok", "", "")

    class Pool(ThreadPoolExecutor):
        def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
            super().shutdown(wait=False, cancel_futures=cancel_futures)
            shut_down.set()
            super().shutdown(wait=wait)

    class Stop(BaseException):
        """What a grading worker told to stop raises from the progress callback."""

    def stop(_result: GradeResult) -> None:
        raise Stop

    monkeypatch.setattr("grader.autograde.grade_submission", grade)
    monkeypatch.setattr("grader.autograde.ThreadPoolExecutor", Pool)
    with pytest.raises(Stop):
        autograde_submissions(
            ROOT,
            ASSIGNMENT,
            students,
            policy=None,  # type: ignore[arg-type]
            config=object(),  # type: ignore[arg-type]
            parallel=1,
            progress=stop,
        )
    # learner-0, and learner-1 when the pool's thread had picked it up already: not the rest.
    assert started in (students[:1], students[:2]), started
