"""Grading sandboxes as Swarm services: hostile cells in one on the worker of the test swarm.

The sandbox is the one autograde runs on Swarm (grader/swarm_sandbox.py), fed directly: a learner's
cells try the network (the manager's address, on this machine), the hidden tests (the
notebook's secret, the runner's stdin), the root file system and the memory limit. The
settings pick the Swarm backend, and a notebook past Swarm's 500 KiB limit is refused with a
clear error before anything is created.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from grader.policy import sandbox_policy
from grader.preprocessors import run_sandboxed
from grader.sandbox import SandboxError, SandboxPolicy
from hub.courses import load_course
from hub.settings import load_settings
from tests.harness import ROOT, TEST_PREFIX
from tests.swarm.conftest import (
    COURSE,
    COURSES_LABEL,
    MANAGER_ADDRESS,
    SandboxWatcher,
    Swarm,
    Worker,
    sandbox_leftovers,
    wait_until,
)

ATTACKS = f"""
import os, socket
print('UID', os.getuid(), os.getgid())
print([line.strip() for line in open('/proc/self/status') if line.startswith(('CapEff', 'NoNew'))])
for name in os.listdir('/run/secrets'):
    try:
        print('SECRET READ', name, open('/run/secrets/' + name).read()[:40])
    except OSError as exc:
        print('SECRET DENIED', name, exc.errno)
for path in ('/proc/1/fd/0', '/proc/1/environ'):
    try:
        os.open(path, os.O_RDONLY)
        print('OPENED', path)
    except OSError as exc:
        print('DENIED', path, exc.errno)
try:
    open('/planted', 'w')
    print('ROOT WRITABLE')
except OSError as exc:
    print('ROOT', exc.errno)
connection = socket.socket()
connection.settimeout(5)
try:
    connection.connect(({MANAGER_ADDRESS!r}, 2377))
    print('CONNECTED to the manager')
except OSError as exc:
    print('NET', exc.errno)
print('IFACES', sorted(name for _, name in socket.if_nameindex()))
print('ROUTES', [line.split()[1] for line in open('/proc/net/route').readlines()[1:]])
print('NOTEBOOK IN FILES', sorted(os.listdir('.')))
"""
HIDDEN = "### BEGIN HIDDEN TESTS\nassert 'hidden-marker-7f3a'\n### END HIDDEN TESTS"
MEMORY_BOMB = "hog = [b'x' * 10**7 for _ in range(10**4)]"


def _notebook(*sources: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in sources]
    return nb


@pytest.mark.docker
@pytest.mark.xdist_group("swarm")
def test_hostile_cells_in_a_swarm_sandbox_on_the_worker(
    swarm: Swarm, swarm_worker: Worker, swarm_course_image: str
) -> None:
    policy = SandboxPolicy(
        image=swarm_course_image,
        memory="256m",
        cell_timeout=10,
        notebook_timeout=60.0,
        name_prefix=f"{TEST_PREFIX}-sandbox-",
        backend="swarm",
        swarm_constraints=(f"node.labels.{COURSES_LABEL}==true",),
    )
    nb = _notebook(ATTACKS, "print('after')", MEMORY_BOMB, HIDDEN)
    with SandboxWatcher(swarm_worker) as watcher:
        result = run_sandboxed(nb, policy, resources_dir=None)
    (job,) = watcher.seen()
    assert job.task is not None and job.task["NodeID"] == swarm_worker.node
    assert job.service["Spec"]["TaskTemplate"]["RestartPolicy"]["Condition"] == "none"
    assert job.container is not None
    assert job.container["HostConfig"]["PidsLimit"] == 128

    outputs = result.notebook.cells[0]["outputs"]
    text = "".join(output.get("text", "") for output in outputs)
    lines = {line.split(" ", 1)[0]: line for line in text.splitlines()}
    # The runner dropped root before anything of the learner ran.
    assert lines["UID"] == "UID 1000 100", text
    assert "'CapEff:\\t0000000000000000', 'NoNewPrivs:\\t1'" in text, text
    # The notebook's secret is root's (13: EACCES), and so is the runner's stdin.
    assert "SECRET DENIED learnhub-notebook 13" in text and "SECRET READ" not in text
    assert "DENIED /proc/1/fd/0 13" in text and "DENIED /proc/1/environ 13" in text
    assert "hidden-marker" not in json.dumps(outputs)
    # 30: EROFS. 101/111/113: unreachable, refused, no route: never connected.
    assert lines["ROOT"] == "ROOT 30"
    assert lines["NET"] in ("NET 101", "NET 111", "NET 113"), text
    # eth0 is the job's own internal overlay: one route, to its own subnet, none by default.
    assert lines["IFACES"] == "IFACES ['eth0', 'lo']"
    routes = lines["ROUTES"]
    assert routes.count("'") == 2 and "'00000000'" not in routes, routes
    assert lines["NOTEBOOK"] == "NOTEBOOK IN FILES []"
    assert result.cell == 2 and (result.outcome, result.reason) == ("limit", "memory"), (
        result.detail
    )
    assert "after" in json.dumps(result.notebook.cells[1]["outputs"])
    # The swarm objects go at once; the worker removes the (lingering) container a moment later.
    assert not any(
        v for k, v in sandbox_leftovers(swarm_worker).items() if k != "worker containers"
    )
    wait_until(lambda: not any(sandbox_leftovers(swarm_worker).values()), "the sandbox to go")


def test_swarm_backend_follows_the_spawner_backend(tmp_path: Path) -> None:
    course = load_course(ROOT / "courses" / COURSE).course
    path = tmp_path / "learnhub.yaml"
    path.write_text(
        "spawner:\n  backend: swarm\n  swarm:\n"
        "    course_image: registry.example:5000/c-{course}:v2\n"
        "    constraints: ['node.role==worker']\n"
    )
    policy = sandbox_policy(load_settings(path, {}), course)
    assert policy.backend == "swarm"
    assert policy.image == f"registry.example:5000/c-{COURSE}:v2"
    assert policy.swarm_constraints == ("node.role==worker",)
    assert sandbox_policy(load_settings(None, {}), course).backend == "docker"


def test_a_notebook_past_the_swarm_limit_is_refused_before_anything_is_made() -> None:
    policy = SandboxPolicy(backend="swarm")
    big = _notebook("x = 1", "# " + "y" * 600_000)
    with pytest.raises(SandboxError, match=r"at most 512000 bytes.*Docker sandbox"):
        # No swarm here: the size is checked before any engine call (no client is made).
        run_sandboxed(big, policy, resources_dir=None)
