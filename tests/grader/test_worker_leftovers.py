"""A grading worker killed (SIGKILL) while a sandbox runs leaves that sandbox behind; the next
worker of the platform removes it, and the job goes on, through the real stack.

One hub (`docker_hub`) with its managed service `grading-worker`: an instructor queues an
autograde from the dashboard, a learner's slow submission keeps its sandbox busy, the test
kills the worker, the Hub starts it again (JupyterHub restarts a managed service that exits),
and the new worker finds the dead worker's job (grader/worker.py `recover`). The sandbox is
found by the labels LearnHub puts on it, never by its name: containers of another platform,
or of a process that is still alive, with the same labels otherwise, stay.
"""

from __future__ import annotations

import os
import signal
import socket
import time

import docker
import pytest
import sqlalchemy as sa
from docker.models.containers import Container

from grader.exchange.storage import ExchangeStorage
from hub.store import Database, GradingJob

# Its hub-side fixtures too: the same LearnHub database, exchange and signed-in instructor.
from tests.grader.test_grading_jobs import (  # noqa: F401 (db, storage, instructor: fixtures)
    COURSE,
    by_learner,
    db,
    instructor,
    newest,
    queue,
    storage,
    submit,
    wait_for,
)
from tests.harness import TEST_PREFIX, Browser, HubProcess

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("report_on_failure")]

IMAGE = "learnhub/singleuser:latest"
#: Long enough to kill the worker while it runs; short enough to grade again afterwards.
SLOW_CELL = "import time\ntime.sleep(20)"
SLOW_LEARNER = "learner-slow"


def job_worker(database: Database, job_id: int) -> str | None:
    with database.transaction() as session:
        row = session.scalars(sa.select(GradingJob).where(GradingJob.id == job_id)).one()
        return row.worker


def slow_sandbox(engine: docker.DockerClient) -> Container | None:
    """The running sandbox of the slow learner's submission, found by its labels."""
    found = engine.containers.list(
        filters={
            "label": [
                "learnhub.role=grader-sandbox",
                f"learnhub.course={COURSE}",
                f"learnhub.student={SLOW_LEARNER}",
            ],
            "status": "running",
        }
    )
    return found[0] if found else None


def decoy(engine: docker.DockerClient, suffix: str, labels: dict[str, str]) -> Container:
    """A container labelled as a sandbox that the new worker must leave alone."""
    container: Container = engine.containers.run(
        IMAGE,
        ["sleep", "600"],
        name=f"{TEST_PREFIX}-decoy-{suffix}",
        labels={"learnhub.role": "grader-sandbox", **labels},
        network_mode="none",
        detach=True,
    )
    return container


def test_the_sandboxes_of_a_killed_worker_are_removed_and_its_job_resumed(
    docker_hub: HubProcess,
    instructor: Browser,  # noqa: F811
    storage: ExchangeStorage,  # noqa: F811
    db: Database,  # noqa: F811
    engine: docker.DockerClient,
) -> None:
    assert queue(instructor, "release").status_code == 303
    assert wait_for(instructor, newest(instructor)["id"])["state"] == "done"
    submit(storage, SLOW_LEARNER, SLOW_CELL)
    assert queue(instructor, "collect").status_code == 303
    assert wait_for(instructor, newest(instructor)["id"])["state"] == "done"

    assert queue(instructor, "autograde", scope="new").status_code == 303
    job_id = newest(instructor)["id"]
    deadline = time.monotonic() + 180
    while (sandbox := slow_sandbox(engine)) is None:
        assert time.monotonic() < deadline, "the slow submission's sandbox never ran"
        time.sleep(0.2)
    worker = job_worker(db, job_id)
    assert worker is not None
    host, _, pid = worker.rpartition(":")
    assert host == socket.gethostname()
    # Labelled with the platform and the process that runs (and would remove) it; named
    # after the platform's prefix.
    assert sandbox.labels["learnhub.prefix"] == docker_hub.prefix, sandbox.labels
    assert sandbox.labels["learnhub.owner"] == worker, sandbox.labels
    assert sandbox.name.startswith(f"{docker_hub.prefix}-sandbox-"), sandbox.name

    decoys = [
        # Another platform's sandbox of a process with the very same id.
        decoy(engine, "other", {"learnhub.prefix": f"{TEST_PREFIX}x", "learnhub.owner": worker}),
        # This platform's sandbox of a process that is alive (this test).
        decoy(
            engine,
            "alive",
            {
                "learnhub.prefix": docker_hub.prefix,
                "learnhub.owner": f"{socket.gethostname()}:{os.getpid()}",
            },
        ),
    ]
    try:
        os.kill(int(pid), signal.SIGKILL)
        # The Hub starts its managed service again; that worker finds the dead one's job.
        resumed = wait_for(instructor, job_id, timeout=300)
        assert resumed["state"] == "done", resumed
        assert any("attempt 2" in note for note in resumed["notes"]), resumed
        assert by_learner(resumed)[SLOW_LEARNER]["state"] == "graded", resumed
        assert job_worker(db, job_id) != worker
        with pytest.raises(docker.errors.NotFound):
            engine.containers.get(sandbox.id)
        for kept in decoys:
            kept.reload()
            assert kept.status == "running", kept.name
    finally:
        for container in decoys:
            container.remove(force=True)
