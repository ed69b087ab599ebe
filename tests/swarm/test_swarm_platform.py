"""The platform on a real Docker Swarm: the host's engine as manager, a Docker-in-Docker worker.

One hub (JupyterHub + proxy + LearnHub service, `spawner.backend: swarm`, Stripe through the
loopback stand-in) places every course server on the worker by a node label. A learner buys the
course with genuinely signed webhook events, launches it on the worker (materials from the course
image, no host bind mount), edits a file that survives a restart on the same node (home
affinity), fetches and submits an assignment through the exchange, is autograded in a sandbox,
and a refund stops the server. The spawn timings are printed for docs/how-to/scale.md.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import flows
from harness.stripe_standin import API_KEY, StripeStandIn
from tests.harness import (
    Browser,
    HubProcess,
    assignments_api,
    browser,
    container_logs,
    hub_settings,
    members,
    open_course,
    put_reference_solution,
    run_learnhub,
    running,
    server_stopped,
    stop_server,
)
from tests.swarm.conftest import (
    COURSE,
    COURSE_IMAGE,
    COURSES_LABEL,
    Registry,
    SandboxWatcher,
    Swarm,
    Worker,
    docker,
    sandbox_leftovers,
    wait_until,
)

pytestmark = [pytest.mark.docker, pytest.mark.xdist_group("swarm")]

PRICE = 4900
ASSIGNMENT = "ps1-data-model"
LEARNER = "mae-swarm"
PASSWORD = "distributed-systems-42"
WEBHOOK_SECRET = "whsec_" + secrets.token_hex(16)


@pytest.fixture(scope="module")
def standin() -> Iterator[StripeStandIn]:
    server = StripeStandIn().start()
    yield server
    server.stop()


def remove_services(prefix: str) -> None:
    ids = docker("service", "ls", "-q", "--filter", f"label=learnhub.prefix={prefix}").split()
    if ids:
        docker("service", "rm", *ids)


@pytest.fixture(scope="module")
def swarm_hub(
    swarm: Swarm,
    swarm_worker: Worker,
    swarm_course_image: str,
    swarm_courses: Path,
    standin: StripeStandIn,
    docker_prefix_cleanup: None,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[HubProcess]:
    """A hub whose course servers are Swarm services placed on the worker."""
    workdir = tmp_path_factory.mktemp("swarm-hub")
    settings = hub_settings(workdir, courses_dir=swarm_courses)
    settings["spawner"]["backend"] = "swarm"
    # The Hub API and the exchange listen on docker0's gateway, which the worker routes to.
    settings["spawner"]["network"] = "bridge"
    settings["spawner"]["swarm"] = {
        "course_image": COURSE_IMAGE,
        "constraints": [f"node.labels.{COURSES_LABEL}==true"],
    }
    settings["payments"] = {"provider": "stripe", "stripe_api_base": standin.url}
    standin.record_sessions_in = f"sqlite:///{workdir / 'var' / 'service' / 'learnhub.sqlite'}"
    hub = HubProcess(
        workdir=workdir,
        settings=settings,
        extra_env={
            "LEARNHUB_STRIPE_SECRET_KEY": API_KEY,
            "LEARNHUB_STRIPE_WEBHOOK_SECRETS": WEBHOOK_SECRET,
        },
    )
    started = time.monotonic()
    try:
        with running(hub):
            print(f"swarm hub started in {time.monotonic() - started:.1f} s")
            try:
                yield hub
            finally:
                print("===== swarm hub log =====\n" + hub.log_tail(150))
                print(container_logs(hub.prefix))
    finally:
        remove_services(hub.prefix)
        # A removed service's container goes a moment later; its volume only after it.
        wait_until(
            lambda: (
                not swarm_worker.docker(
                    "ps", "-aq", "--filter", f"label=learnhub.prefix={hub.prefix}"
                )
            ),
            "the worker's course containers to go",
        )
        for volume in swarm_worker.docker("volume", "ls", "-q").split():
            if volume.startswith(hub.prefix):
                swarm_worker.docker("volume", "rm", "-f", volume)


def deliver(hub: HubProcess, events: list[dict[str, Any]]) -> None:
    flows.deliver(hub, events, WEBHOOK_SECRET)


def in_group(hub: HubProcess) -> bool:
    return LEARNER in members(hub, f"course-{COURSE}")


def service_task(hub: HubProcess) -> dict[str, Any]:
    """The running task of the learner's course service (node, ports, state)."""
    (service,) = docker(
        "service", "ls", "-q", "--filter", f"label=learnhub.prefix={hub.prefix}",
        "--filter", f"label=learnhub.user={LEARNER}",
    ).split()  # fmt: skip
    tasks = docker("service", "ps", "-q", "--filter", "desired-state=running", service).split()
    (task,) = tasks
    found: dict[str, Any] = json.loads(docker("inspect", task))[0]
    return found


def launch(b: Browser, hub: HubProcess) -> tuple[str, float]:
    """Start the course server; its URL and the seconds from request to ready."""
    started = time.monotonic()
    url = open_course(b, hub, LEARNER, COURSE, timeout=120)
    return url, time.monotonic() - started


def assignments(b: Browser, url: str, action: str) -> list[dict[str, Any]]:
    return assignments_api(b, url, COURSE, ASSIGNMENT, action)


def assert_graded_in_swarm_jobs(watcher: SandboxWatcher, worker: Worker) -> None:
    """The submission ran in a Swarm job on the worker, with the sandbox's limits and a network
    of its own that leads nowhere; nothing of it is left."""
    jobs = watcher.seen()
    assert jobs, "autograde ran no Swarm sandbox job (it ran on the hub host's engine)"
    for job in jobs:
        spec = job.service["Spec"]
        # One task, never restarted (see grader/swarm_sandbox.py for why not `replicated-job`).
        assert spec["Mode"] == {"Replicated": {"Replicas": 1}}, spec["Mode"]
        template = spec["TaskTemplate"]
        assert template["RestartPolicy"]["Condition"] == "none"
        container = template["ContainerSpec"]
        assert container["Image"].startswith(COURSE_IMAGE.format(course=COURSE))
        assert container["ReadOnly"] is True and container["CapabilityDrop"] == ["ALL"]
        assert not [m for m in container.get("Mounts", []) if m["Type"] in ("bind", "volume")]
        # The course server's memory (the sandbox's default), one core, the default pids.
        limits = template["Resources"]["Limits"]
        assert limits == {"MemoryBytes": 1024**3, "NanoCPUs": 10**9, "Pids": 128}, limits
        assert job.task is not None and job.task["NodeID"] == worker.node
        # Ran, and was never seen failing: the runner lingers after its result until the
        # service goes (see grader/swarm_sandbox.py).
        assert "running" in job.states, job.states
        assert not {"failed", "rejected", "complete"} & set(job.states), job.states
        # Its own internal overlay network: no gateway out, no other member.
        assert job.network is not None
        assert job.network["Driver"] == "overlay" and job.network["Internal"] is True
        assert job.network["Name"] == spec["Name"]
        # What the worker's engine made of it.
        assert job.container is not None, "the sandbox container was not seen on the worker"
        host = job.container["HostConfig"]
        assert (host["Memory"], host["NanoCpus"], host["PidsLimit"]) == (1024**3, 10**9, 128)
        assert host["ReadonlyRootfs"] is True and host["CapDrop"] == ["ALL"]
        assert list(job.container["NetworkSettings"]["Networks"]) == [spec["Name"]]
    wait_until(lambda: not any(sandbox_leftovers(worker).values()), "the sandbox jobs to go")


def test_buy_learn_grade_refund_on_a_swarm_worker(
    swarm_hub: HubProcess,
    swarm_worker: Worker,
    registry: Registry,
    standin: StripeStandIn,
    swarm_courses: Path,
) -> None:
    hub = swarm_hub
    assert run_learnhub(hub, "grader", "release", COURSE, ASSIGNMENT).returncode == 0
    with browser(hub) as b:
        b.signup(LEARNER, PASSWORD)
        assert b.login(LEARNER, PASSWORD).status_code == 200
        assert b.spawn_course(LEARNER, COURSE).status_code == 403

        # Buy: genuinely signed events, the object re-fetched from the stand-in.
        session = standin.course_checkout(LEARNER, COURSE, PRICE, "Python Foundations")
        deliver(hub, standin.sim.complete_checkout(session))
        wait_until(lambda: in_group(hub), "membership after payment")

        # Launch: a service on the worker, its materials from the course image.
        url, first_spawn = launch(b, hub)
        task = service_task(hub)
        assert task["NodeID"] == swarm_worker.node
        # The worker got the course image from the registry (its mirror), by its plain name.
        assert registry.served(swarm_worker.address, f"learnhub/course-{COURSE}")
        spec = task["Spec"]["ContainerSpec"]
        assert spec["User"] == "1000:100" and spec["ReadOnly"] is True
        assert spec["CapabilityDrop"] == ["ALL"]
        assert not [m for m in spec["Mounts"] if m["Type"] == "bind"]
        limits = task["Spec"]["Resources"]["Limits"]
        assert limits["MemoryBytes"] == 1024**3 and limits["NanoCPUs"] == 10**9
        assert limits["Pids"] == 512
        names = {item["name"] for item in b.contents(url).json()["content"]}
        expected = {p.name for p in (swarm_courses / COURSE / "materials").iterdir()}
        assert expected <= names, f"missing {expected - names}"

        # An edit survives a restart: the server comes back on the node that holds the home.
        assert b.put_file(url, "README.md", "# my swarm notes\n").status_code == 200
        stop_server(hub, LEARNER, COURSE, timeout=60)
        url, second_spawn = launch(b, hub)
        assert service_task(hub)["NodeID"] == swarm_worker.node
        assert b.contents(url, "README.md").json()["content"] == "# my swarm notes\n"
        print(f"spawn on the worker: first {first_spawn:.1f} s, restart {second_spawn:.1f} s")

        # Fetch, solve and submit through the exchange (the worker reaches the host's gateway).
        assignments(b, url, "fetch")
        fetched = b.contents(url, f"{ASSIGNMENT}/{ASSIGNMENT}.ipynb").json()["content"]
        assert "BEGIN HIDDEN TESTS" not in json.dumps(fetched)
        source = swarm_courses / COURSE / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
        put_reference_solution(b, url, source, ASSIGNMENT)
        assert any(a["status"] == "submitted" for a in assignments(b, url, "submit"))

        collected = run_learnhub(hub, "grader", "collect", COURSE, ASSIGNMENT)
        assert collected.returncode == 0, collected.stderr
        with SandboxWatcher(swarm_worker) as watcher:
            graded = run_learnhub(hub, "grader", "autograde", COURSE, ASSIGNMENT)
        assert graded.returncode == 0, graded.stderr
        assert graded.stdout.split()[:3] == [LEARNER, "10/10", "ok"], graded.stdout
        assert_graded_in_swarm_jobs(watcher, swarm_worker)

        # Refund: out of the group, and the service is gone from the swarm.
        intent = standin.store.objects[standin.store.objects[session]["payment_intent"]]
        deliver(hub, standin.sim.refund(str(intent["latest_charge"])))
        wait_until(lambda: not in_group(hub), "removal after refund")
        wait_until(lambda: server_stopped(hub, LEARNER, COURSE), "the course server to stop")
        assert not docker("service", "ls", "-q", "--filter", f"label=learnhub.prefix={hub.prefix}")
        assert b.spawn_course(LEARNER, COURSE).status_code == 403
    # The home stays on the worker for a re-purchase.
    volumes = swarm_worker.docker("volume", "ls", "-q").split()
    assert [v for v in volumes if v.startswith(hub.prefix)]
