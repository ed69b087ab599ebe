"""Shared fixtures: the Docker engine and images, a real hub, cleanup and failure reports."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.harness import (
    ROOT,
    TEST_PREFIX,
    HubProcess,
    container_logs,
    docker_cleanup,
    hub_settings,
    remove_stale_test_objects,
    running,
)


def pytest_configure(config: pytest.Config) -> None:
    """A root test run gets its own temporary folder, outside `/tmp/pytest-of-root`.

    Its hubs run the LearnHub service as an unprivileged user (`hub.service_user`), which the
    harness lets through the temporary folders to the hub's work folder and courses. Every
    pytest session that starts resets the shared `/tmp/pytest-of-root` to 0700, and so would
    lock that user out of a hub another checkout's session is running.
    """
    if not hasattr(config, "workerinput"):
        # The controller (or a run without xdist) starts each run's timelines afresh.
        for old in TIMELINE_DIR.glob("timeline-*.tsv"):
            old.unlink()
    if os.geteuid() == 0 and config.option.basetemp is None:
        config.option.basetemp = str(Path(tempfile.gettempdir()) / f"pytest-learnhub-{os.getpid()}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Remove this session's own temporary folder when everything passed (kept to debug)."""
    basetemp = session.config.option.basetemp
    if exitstatus == 0 and basetemp and Path(basetemp).name == f"pytest-learnhub-{os.getpid()}":
        shutil.rmtree(basetemp, ignore_errors=True)


#: Test modules that share host-global state, by group: the modules of one group run one after
#: another on one xdist worker (docs/how-to/writing-tests.md).
SHARED_HOST_STATE: dict[str, tuple[str, ...]] = {
    # The swarm fixtures hold a machine-wide lock for the rest of their worker's session (the
    # swarm, its worker node and registry are session-scoped): on the other worker, the second
    # module waited 712 s for the first worker's whole session to end (full run at 545cb55).
    "host-swarm": ("tests/swarm/test_swarm_platform.py", "tests/swarm/test_swarm_sandbox.py"),
}


def unit_of_work(nodeid: str) -> str:
    """What xdist hands to one worker as a whole: the test's module, or its module's group."""
    module = nodeid.split("::", 1)[0]
    for group, modules in SHARED_HOST_STATE.items():
        if module in modules:
            return group
    return module


#: Seconds each unit of work took in a recent whole run (`scripts/timeline.py --write`), so
#: the scheduler can hand out the longest first. Only the order depends on it: a stale or
#: missing entry never changes what runs.
DURATIONS_FILE = Path(__file__).with_name("module_durations.json")
#: A unit with no recorded duration (a new module) is assumed to take this long: about a
#: module that starts its own hub, so it is not left for the very end.
UNKNOWN_UNIT_SECONDS = 20.0


def expected_seconds() -> dict[str, float]:
    """The recorded duration of each unit of work (empty when there is no record)."""
    try:
        recorded = json.loads(DURATIONS_FILE.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(unit): float(seconds) for unit, seconds in recorded.items()}


def longest_first(units: list[str], durations: dict[str, float]) -> list[str]:
    """``units`` in the order to hand them out: longest expected duration first.

    Largest-first keeps the two workers' finishing times close: the last units handed out are
    short ones, so no worker is left running a long module alone while the other idles.
    """
    return sorted(units, key=lambda unit: -durations.get(unit, UNKNOWN_UNIT_SECONDS))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """With `-n 2 --dist loadgroup` (`scripts/test.sh -n 2`), hand out whole modules.

    A module's tests share module-scoped fixtures (a hub takes 10-20 s to start); split across
    two workers, each would start its own. xdist's own `xdist_group` marks do not work with
    pytest 9.2 (xdist 3.8.0 renames `item._nodeid`, which pytest no longer reads), so tests
    run one by one, wherever; this scheduler groups by :func:`unit_of_work` instead, from the
    node ids alone (the controller collects nothing). Units go out longest first
    (:func:`longest_first`; xdist's own order is by number of tests, which put the slowest
    modules, with few tests each, at the end of the run).
    """
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    durations = expected_seconds()

    class ModuleScheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return unit_of_work(nodeid)

        def _assign_work_unit(self, node: Any) -> None:
            # schedule() fills the whole queue before it assigns the first unit: order it once.
            if not getattr(self, "_ordered", False):
                self._ordered = True
                queue = self.workqueue
                for unit in longest_first(list(queue), durations):
                    queue.move_to_end(unit)
            super()._assign_work_unit(node)

    return ModuleScheduling(config, log)


#: Where each test's start and end are written, one file per xdist worker
#: (`timeline-gw0.tsv`...; `timeline-main.tsv` without xdist): worker, start, end (Unix time),
#: node id. `scripts/timeline.py` turns them into per-worker, per-module timelines, to see
#: whether a worker idles at the end of a run (docs/how-to/writing-tests.md, "Balance").
TIMELINE_DIR = ROOT / "test-artifacts"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):  # type: ignore[no-untyped-def]
    """Time the whole of each test (setup, call, teardown) into this worker's timeline file."""
    start = time.time()
    try:
        return (yield)
    finally:
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        TIMELINE_DIR.mkdir(exist_ok=True)
        with open(TIMELINE_DIR / f"timeline-{worker}.tsv", "a", encoding="utf-8") as out:
            out.write(f"{worker}\t{start:.3f}\t{time.time():.3f}\t{item.nodeid}\n")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """Remember each phase's report on the item, so fixtures can tell a failed test."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def _failed(request: pytest.FixtureRequest) -> bool:
    report = getattr(request.node, "rep_call", None)
    return bool(report and report.failed)


@pytest.fixture(scope="session")
def docker_engine() -> None:
    """A reachable Docker engine. Fails (never skips) when there is none: CI starts one."""
    result = subprocess.run(["docker", "info"], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.fail(
            "Docker engine not reachable; run scripts/test.sh, which starts one:\n" + result.stderr
        )


@pytest.fixture(scope="session")
def images(docker_engine: None) -> None:
    """The LearnHub images, built once (a no-op when up to date)."""
    from hub import images as image_builder

    image_builder.ensure_base_image(ROOT, base_image="learnhub/base:bookworm", log=print)
    image_builder.build_images(ROOT, log=print)


@pytest.fixture(scope="session")
def engine(docker_engine: None) -> Iterator[docker.DockerClient]:
    """A docker-py client of the engine the tests run on (to inspect what the hub made)."""
    client = docker.from_env(version="auto")
    yield client
    client.close()


@pytest.fixture(scope="session")
def docker_prefix_cleanup(docker_engine: None) -> Iterator[None]:
    """Remove test containers and volumes before and after the session."""
    remove_stale_test_objects()
    docker_cleanup(TEST_PREFIX)
    yield
    docker_cleanup(TEST_PREFIX)


@pytest.fixture(scope="session")
def courses_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of the demo courses, so tests can change materials."""
    target = tmp_path_factory.mktemp("courses") / "courses"
    shutil.copytree(ROOT / "courses", target)
    return target


@pytest.fixture(scope="module")
def docker_hub(
    images: None,
    docker_prefix_cleanup: None,
    courses_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[HubProcess]:
    """A real hub + proxy with DockerSpawner, shared by one test module."""
    workdir = tmp_path_factory.mktemp("hub")
    hub = HubProcess(workdir=workdir, settings=hub_settings(workdir, courses_dir=courses_dir))
    with running(hub):
        yield hub


@pytest.fixture
def report_on_failure(request: pytest.FixtureRequest, docker_hub: HubProcess) -> Iterator[None]:
    """Print the hub log and every test container's log when the test fails."""
    yield
    if _failed(request):
        print("===== hub log =====\n" + docker_hub.log_tail())
        print("===== containers =====\n" + container_logs(TEST_PREFIX))
