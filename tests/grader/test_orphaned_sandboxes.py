"""A killed `learnhub grader autograde` leaves its sandboxes behind and no job row that would
lead a worker to them; a grading worker removes them once, before its first job (real Docker, a
real worker process). Found by their labels: another platform's sandboxes, another host's and a live
process's stay.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import docker
import pytest
from docker.models.containers import Container

from grader.owner import process_owner
from grader.sandbox import sandbox_labels
from hub.grading_jobs import JobRequest, enqueue
from hub.store import Database, upgrade
from tests.harness import TEST_PREFIX

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "learnhub/base:bookworm"


def sandbox(engine: docker.DockerClient, suffix: str, platform: str, owner: str) -> Container:
    """A container labelled as ``owner``'s sandbox of ``platform`` (created, never started)."""
    container: Container = engine.containers.create(
        IMAGE,
        ["true"],
        name=f"{TEST_PREFIX}-sweep-{suffix}",
        labels=sandbox_labels(platform, owner),
        network_mode="none",
    )
    return container


def start_worker_once(tmp_path: Path, platform: str) -> subprocess.CompletedProcess[str]:
    """Run a grading worker of ``platform`` until no job is queued; its log. One job is queued,
    of a course the worker does not know: it claims it (and sweeps first), then refuses it."""
    config = tmp_path / "learnhub.yaml"
    config.write_text(
        f"courses_dir: {ROOT / 'courses'}\nhub:\n  data_dir: {tmp_path / 'var'}\n"
        f"spawner:\n  name_prefix: {platform}\n"
    )
    url = f"sqlite:///{tmp_path / 'learnhub.sqlite'}"
    upgrade(url)
    db = Database(url)
    try:
        enqueue(db, JobRequest("no-such-course", "ps1", "autograde"), "test")
    finally:
        db.dispose()
    script = (
        "import logging\n"
        "logging.basicConfig(level=logging.INFO)\n"
        "from pathlib import Path\n"
        "from grader.worker import serve\n"
        "from hub.grading_jobs import JobStore\n"
        "from hub.settings import load_settings\n"
        "from hub.store import Database\n"
        f"serve(load_settings(Path({str(config)!r}), {{}}), token='t', once=True,\n"
        f"      rows=JobStore(Database({url!r})))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_a_worker_removes_before_its_first_job_the_sandboxes_whose_owner_is_gone(
    tmp_path: Path, engine: docker.DockerClient, docker_prefix_cleanup: None
) -> None:
    platform = f"{TEST_PREFIX}-a"
    ended = subprocess.Popen(["true"])  # the killed `learnhub grader autograde`
    ended.wait()
    dead = f"{socket.gethostname()}:{ended.pid}"
    orphan = sandbox(engine, "orphan", platform, dead)
    kept = [
        sandbox(engine, "other-platform", f"{TEST_PREFIX}-b", dead),
        sandbox(engine, "live-owner", platform, process_owner()),  # this test, still running
        sandbox(engine, "other-host", platform, f"elsewhere.invalid:{ended.pid}"),
    ]
    try:
        worker = start_worker_once(tmp_path, platform)
        assert worker.returncode == 0, worker.stderr
        with pytest.raises(docker.errors.NotFound):
            engine.containers.get(orphan.id)
        for container in kept:
            container.reload()  # NotFound if the worker removed it
        removed = [line for line in worker.stderr.splitlines() if "dead process removed" in line]
        assert removed == [
            "WARNING:learnhub.grader.sandbox:sandbox of a dead process removed "
            f"container={orphan.name} owner={dead} platform={platform}"
        ], worker.stderr
        assert "Traceback" not in worker.stderr, worker.stderr
    finally:
        for container in [orphan, *kept]:
            try:
                container.remove(force=True)
            except docker.errors.NotFound:
                pass
