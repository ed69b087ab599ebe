"""A Docker Swarm on this machine: the host's engine as manager, a Docker-in-Docker worker.

These fixtures change host-global state (swarm mode, a worker container, published ports), so
every test that uses them is in the xdist group ``swarm`` and the session holds a file lock while
it uses the swarm. A swarm this session did not create is used as it is and never left; one it
created is left at the end. The worker's image store is a named volume kept between runs
(``learnhub-swarm-worker-images``), and so is the registry's storage
(``/var/cache/learnhub-swarm-registry``): only changed layers travel.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker as docker_sdk
import httpx
import pytest

from harness import flows
from hub.swarm import build_all
from tests.harness import ROOT, TEST_PREFIX, free_port

#: Where the manager listens and the worker joins: the host's Docker bridge gateway, which the
#: worker container reaches (127.0.0.1 would be the worker's own loopback).
MANAGER_ADDRESS = "172.17.0.1"
WORKER_IMAGE = "learnhub/swarm-worker:latest"
WORKER_IMAGES_VOLUME = "learnhub-swarm-worker-images"
#: The node label that places course servers on the worker (the hub's `swarm.constraints`).
COURSES_LABEL = "learnhub-courses"
#: The course of the swarm tests and its Swarm image (`spawner.swarm.course_image`).
COURSE = "python-foundations"
COURSE_IMAGE = "learnhub/course-{course}:latest"
#: The label of every Swarm object a grading sandbox run creates (grader/swarm_sandbox.py).
SANDBOX_ROLE = "learnhub.role=grader-sandbox"
#: Shared by every session on this machine on purpose: one swarm test at a time.
LOCK = Path("/tmp/learnhub-swarm-tests.lock")
#: The registry's storage, kept between runs so that only changed layers are pushed again.
REGISTRY_STORAGE = Path("/var/cache/learnhub-swarm-registry")


def pytest_configure(config: pytest.Config) -> None:
    """Register the xdist_group marker, harmless without pytest-xdist."""
    config.addinivalue_line("markers", "xdist_group(name): run in one pytest-xdist worker")


def docker(*args: str, input: bytes | None = None, timeout: float = 300) -> str:
    """Run the docker CLI; its stdout; fail the test with docker's message when it fails."""
    result = subprocess.run(
        ["docker", *args], input=input, capture_output=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed: {result.stderr.decode()}")
    return result.stdout.decode().strip()


def wait_until(condition: Callable[[], object], what: str, timeout: float = 60) -> None:
    """The harness's wait, at the swarm's pace (a swarm reports in steps of ~0.2 s and up to a
    minute under load)."""
    flows.wait_until(condition, what, timeout=timeout, interval=0.2)


def swarm_state() -> str:
    return docker("info", "--format", "{{.Swarm.LocalNodeState}}")


@dataclass
class Swarm:
    """The swarm the tests run on: its manager's node id and whether this session made it."""

    manager: str
    created: bool


@pytest.fixture(scope="session")
def swarm(docker_engine: None) -> Iterator[Swarm]:
    """Swarm mode on the host's engine: `docker swarm init` unless it is already on."""
    LOCK.touch(exist_ok=True)
    with LOCK.open() as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        created = swarm_state() == "inactive"
        if created:
            docker(
                "swarm", "init",
                "--advertise-addr", MANAGER_ADDRESS,
                "--listen-addr", f"{MANAGER_ADDRESS}:2377",
            )  # fmt: skip
        manager = docker("info", "--format", "{{.Swarm.NodeID}}")
        try:
            yield Swarm(manager=manager, created=created)
        finally:
            if created:
                docker("swarm", "leave", "--force")


@dataclass
class Registry:
    """Debian's `docker-registry`, twice over one storage folder: the host's engine pushes to
    the loopback listener (the only plain-HTTP registries it accepts without a restart are on
    127.0.0.0/8), the worker pulls from the one on the bridge gateway, as its registry mirror.
    A mirror serves Docker Hub names, so `learnhub/course-x:latest` means the same image on
    every node and the services name it unchanged."""

    push: str
    pull: str
    #: The pull listener's access log.
    pull_log: Path

    def publish(self, image: str) -> float:
        """Push `image` (by its own name on the nodes); the seconds it took."""
        started = time.monotonic()
        pushed = f"{self.push}/{image}"
        docker("tag", image, pushed)
        try:
            docker("push", "-q", pushed, timeout=900)
        finally:
            docker("rmi", pushed)
        return time.monotonic() - started

    def served(self, client: str, image: str) -> bool:
        """Whether the pull listener answered `client` for a manifest of `image` (no tag): a
        GET when the node lacked the image, a HEAD when it checked the one it has."""
        path = f" /v2/{image}/manifests/"
        return any(
            line.startswith(f"{client} ") and (f'"GET{path}' in line or f'"HEAD{path}' in line)
            for line in self.pull_log.read_text(errors="replace").splitlines()
        )


def _ensure_registry_installed() -> None:
    if shutil.which("docker-registry"):
        return
    subprocess.run(["apt-get", "update", "-q"], capture_output=True, check=False, timeout=600)
    installed = subprocess.run(
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", "docker-registry"],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if installed.returncode != 0:
        raise AssertionError(f"apt-get install docker-registry failed:\n{installed.stderr}")


@pytest.fixture(scope="session")
def registry(swarm: Swarm, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """The image registry of the test swarm (see :class:`Registry`)."""
    _ensure_registry_installed()
    REGISTRY_STORAGE.mkdir(parents=True, exist_ok=True)
    folder = tmp_path_factory.mktemp("registry")
    listeners = {"push": f"127.0.0.1:{free_port()}", "pull": f"{MANAGER_ADDRESS}:{free_port()}"}
    processes = []
    try:
        for role, address in listeners.items():
            config = folder / f"{role}.yml"
            config.write_text(
                "version: 0.1\nlog:\n  level: warn\n"
                f"storage:\n  filesystem:\n    rootdirectory: {REGISTRY_STORAGE}\n"
                f"http:\n  addr: {address}\n"
            )
            log = (folder / f"{role}.log").open("wb")
            processes.append(
                subprocess.Popen(["docker-registry", "serve", str(config)], stdout=log, stderr=log)
            )
        for address in listeners.values():
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(f"http://{address}/v2/", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"docker-registry on {address} did not answer")
                time.sleep(0.1)
        yield Registry(push=listeners["push"], pull=listeners["pull"], pull_log=folder / "pull.log")
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)


@dataclass
class Worker:
    """A worker node: its container, node id and swarm address."""

    container: str
    node: str
    address: str
    #: The worker's Docker API on the host's file system (a second socket of its dockerd).
    socket: Path | None = None

    def run_on_node(
        self, command: list[str], env: dict[str, str], cwd: Path
    ) -> subprocess.CompletedProcess[str]:
        """Run a host program as if on the node: in the worker's network namespace (its
        iptables), with DOCKER_HOST at the worker's engine."""
        assert self.socket is not None
        pid = docker("inspect", "--format", "{{.State.Pid}}", self.container)
        result = subprocess.run(
            ["nsenter", "--target", pid, "--net", *command],
            env={**env, "DOCKER_HOST": f"unix://{self.socket}"},
            cwd=cwd,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        print(result.stdout, result.stderr)
        return result

    def docker(self, *args: str, input: bytes | None = None, timeout: float = 300) -> str:
        """Run the docker CLI against the worker's own engine."""
        return docker("exec", "-i", self.container, "docker", *args, input=input, timeout=timeout)

    def image_id(self, image: str) -> str | None:
        try:
            return self.docker("image", "inspect", "--format", "{{.Id}}", image)
        except AssertionError:
            return None


def _build_worker_image() -> None:
    """The worker image from the offline base plus Debian's docker.io (layer cache: once)."""
    docker("build", "-q", "-t", WORKER_IMAGE, str(ROOT / "docker" / "swarm-worker"), timeout=900)


@pytest.fixture(scope="session")
def swarm_worker(
    swarm: Swarm,
    registry: Registry,
    images: None,
    docker_prefix_cleanup: None,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Worker]:
    """A Docker-in-Docker container joined to the swarm as a worker, labelled for courses.

    `--privileged` fails on this VM (its bounding set lacks CAP_SYS_RESOURCE), hence every
    capability but that one and the unconfined profiles; /var/lib/docker on a volume, because
    overlay2 cannot sit on the container's own overlay root.
    """
    started = time.monotonic()
    _build_worker_image()
    name = f"{TEST_PREFIX}-swarm-worker"
    # `learnhub network apply --swarm-node` runs "on the node" through this socket.
    sockets = tmp_path_factory.mktemp("worker-api")
    docker(
        "run", "-d", "--name", name, "--hostname", name,
        "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
        "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
        "--security-opt", "systempaths=unconfined",
        "--cgroupns", "host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
        "-v", f"{WORKER_IMAGES_VOLUME}:/var/lib/docker", "-v", f"{sockets}:/run/learnhub-node",
        WORKER_IMAGE,
        "--registry-mirror", f"http://{registry.pull}", "--insecure-registry", registry.pull,
        "--host", "unix:///run/learnhub-node/docker.sock",
    )  # fmt: skip
    node = ""
    try:
        deadline = time.monotonic() + 60
        while subprocess.run(
            ["docker", "exec", name, "docker", "info"], capture_output=True, check=False
        ).returncode:
            if time.monotonic() > deadline:
                raise AssertionError("worker dockerd did not start:\n" + docker("logs", name))
            time.sleep(0.2)
        worker = Worker(container=name, node="", address="", socket=sockets / "docker.sock")
        # The volume keeps the images, and with them the swarm state of an earlier run.
        subprocess.run(
            ["docker", "exec", name, "docker", "swarm", "leave", "--force"],
            capture_output=True,
            check=False,
        )
        token = docker("swarm", "join-token", "-q", "worker")
        worker.docker("swarm", "join", "--token", token, f"{MANAGER_ADDRESS}:2377")
        node = worker.docker("info", "--format", "{{.Swarm.NodeID}}")
        worker.node = node
        worker.address = json.loads(docker("node", "inspect", node))[0]["Status"]["Addr"]
        docker("node", "update", "--label-add", f"{COURSES_LABEL}=true", node)
        print(f"worker image checked, started and joined in {time.monotonic() - started:.1f} s")
        yield worker
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
        if node:
            subprocess.run(
                ["docker", "node", "rm", "--force", node], capture_output=True, check=False
            )


@pytest.fixture(scope="session")
def swarm_courses(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This module's own copy of the demo courses (other tests edit the shared copy's
    materials, which would change the course images)."""
    target = tmp_path_factory.mktemp("swarm-courses") / "courses"
    shutil.copytree(ROOT / "courses", target)
    return target


@pytest.fixture(scope="session")
def swarm_course_image(registry: Registry, swarm_courses: Path) -> str:
    """The course's Swarm image (the course image plus its materials), in the registry."""
    started = time.monotonic()
    built = build_all(
        swarm_courses, template=COURSE_IMAGE, default_image="learnhub/singleuser:latest", push=False
    )
    image = COURSE_IMAGE.format(course=COURSE)
    assert image in built
    print(f"course images built in {time.monotonic() - started:.1f} s")
    print(f"course image pushed to the registry in {registry.publish(image):.1f} s")
    return image


def sandbox_leftovers(worker: Worker) -> dict[str, list[str]]:
    """Everything of a grading sandbox still on the swarm: services, secrets, configs and
    networks on the manager, containers on the worker (empty lists when all is gone)."""
    left = {
        kind: docker(kind, "ls", "-q", "--filter", f"label={SANDBOX_ROLE}").split()
        for kind in ("service", "secret", "config", "network")
    }
    left["worker containers"] = worker.docker(
        "ps", "-aq", "--filter", f"label={SANDBOX_ROLE}"
    ).split()
    return left


@dataclass
class SandboxJob:
    """One grading sandbox seen on the swarm while it ran."""

    service: dict[str, Any]
    network: dict[str, Any] | None = None
    task: dict[str, Any] | None = None
    #: `docker inspect` of the task's container, on the node that ran it (the worker).
    container: dict[str, Any] | None = None
    #: Every state the task was seen in, in order.
    states: list[str] = field(default_factory=list)


@dataclass
class SandboxWatcher:
    """Records every grading sandbox service while it exists, from the manager's API, and its
    task's container from the worker's engine (a sandbox job lives for seconds)."""

    worker: Worker
    jobs: dict[str, SandboxJob] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _errors: list[str] = field(default_factory=list)

    def __enter__(self) -> SandboxWatcher:
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout=30)

    def _watch(self) -> None:
        client = docker_sdk.from_env()
        try:
            while not self._stop.wait(0.1):
                try:
                    self._look(client)
                except docker_sdk.errors.NotFound:
                    continue  # a job ended between two calls: seen on the next round or not
                except docker_sdk.errors.APIError as exc:
                    self._errors.append(str(exc))
        finally:
            client.close()

    def _look(self, client: docker_sdk.DockerClient) -> None:
        for service in client.api.services(filters={"label": SANDBOX_ROLE}):
            job = self.jobs.setdefault(service["ID"], SandboxJob(service=service))
            if job.network is None:
                networks = service["Spec"]["TaskTemplate"].get("Networks", [])
                if networks:
                    job.network = client.api.inspect_network(networks[0]["Target"])
            for task in client.api.tasks(filters={"service": service["ID"]}):
                job.task = task
                state = task["Status"]["State"]
                if not job.states or job.states[-1] != state:
                    job.states.append(state)
                container = task["Status"].get("ContainerStatus", {}).get("ContainerID")
                if container and job.container is None and task["NodeID"] == self.worker.node:
                    try:
                        job.container = json.loads(self.worker.docker("inspect", container))[0]
                    except AssertionError:
                        pass  # already removed with its service

    def seen(self) -> list[SandboxJob]:
        """The jobs seen; fails when watching itself failed."""
        assert not self._errors, self._errors
        return list(self.jobs.values())
