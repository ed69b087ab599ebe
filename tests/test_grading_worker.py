"""The grading worker's process: started as the Hub starts it, stopped as the Hub (or Ctrl-C on
`learnhub demo`) stops it, and lean to import. No Docker: the jobs here need no sandbox.

The worker's jobs themselves are tests/test_grading_jobs.py (rows) and
tests/grader/test_grading_jobs.py (the dashboard, real sandboxes).
"""

from __future__ import annotations

import threading
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
from hub.settings import Settings, load_settings
from hub.store import Database, GradingJob, upgrade
from tests.harness import ROOT

COURSE = "python-foundations"
ASSIGNMENT = "ps1-data-model"


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
