"""Run one notebook in a throwaway Swarm service: the Docker sandbox, scheduled on the cluster.

With ``spawner.backend: swarm`` submissions run where the course servers run, not on the hub
host's engine. Each run is a one-shot service (one replica, restart condition ``none``) with
the Docker sandbox's limits (:mod:`grader.sandbox`): memory, CPUs, pids, a read-only root, tmpfs
``/tmp`` and work dir, every capability dropped, the same runner and the same minimal
environment. What differs is how things travel, because a Swarm task has no stdin to attach
to and the hub host's folders are not on the node that runs it:

* **The notebook** (hidden tests included) is a Swarm *secret* mounted at
  ``/run/secrets/learnhub-notebook``, owned by root, mode 0400. The task starts as root with
  only ``SETUID``, ``SETGID`` and ``SETPCAP``; a shell opens the secret as the runner's stdin
  and ``setpriv`` becomes the sandbox user with no capabilities (bounding set emptied too) and
  ``no_new_privs`` before it executes the runner as PID 1. From then on no process in the
  container can open the file again (root's, mode 0400; ``no_new_privs`` disarms the image's
  set-uid programs), and the runner reads the open descriptor to the end before the kernel
  starts, as with the Docker sandbox's stdin. The secret is removed with the service.
* **The runner and the assignment's other files** are Swarm *configs* (one per file), mounted
  read-only under ``/sandbox/in``: readable by student code, as the Docker sandbox's bind is.
* **The result** comes back through the task's log (``docker service logs``, stdout only),
  the Docker sandbox's channel: the runner prints it after killing every other process, then
  waits to be killed (``--linger``), because a Docker 20.10 node removes the container of a
  removed service only while its task still runs (a finished task's container would stay).
  The grader reads the log while the task runs, then removes the service.
* **No network**: Swarm has no ``none`` network for services (swarmkit's only predefined
  networks are ``bridge`` and ``host``), so each run gets its own *internal* overlay network
  with no other member and no gateway, and its DNS forwards only to the container's own
  loopback. See docs/security.md#grading-sandboxes-on-swarm for what Swarm on Docker 20.10
  cannot express (swap, OOM reporting) and how it is covered.

Swarm secrets and configs hold at most 500 KiB each, so a larger notebook or assignment file
is a :class:`~grader.sandbox.SandboxError` that says so. Everything a run creates carries the
label ``learnhub.sandbox=<name>`` and is removed when it ends, whatever happened.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker.errors
import nbformat
from docker.client import DockerClient
from docker.models.configs import Config
from docker.models.networks import Network
from docker.models.secrets import Secret
from docker.types import (
    ConfigReference,
    ContainerSpec,
    DNSConfig,
    DriverConfig,
    EndpointSpec,
    Mount,
    NetworkAttachmentConfig,
    Resources,
    RestartPolicy,
    SecretReference,
    ServiceMode,
    TaskTemplate,
)
from docker.utils import parse_bytes
from nbformat import NotebookNode

from grader.sandbox import (
    INPUT_MOUNT,
    RUNNER_MODULE,
    RUNNER_SOURCE,
    RunEnd,
    SandboxError,
    SandboxPolicy,
    SandboxResult,
    assignment_files,
    finish_run,
    log_context,
    parse_result,
    runner_arguments,
)
from hub.docker_engine import docker_client
from hub.errors import DockerUnreachable

log = logging.getLogger("learnhub.grader.swarm_sandbox")

#: Largest Swarm secret or config (swarmkit's ``MaxSecretSize`` and ``MaxConfigSize``).
SWARM_OBJECT_LIMIT = 500 * 1024
#: The notebook's secret, under ``/run/secrets/`` in the task.
NOTEBOOK_FILE = "learnhub-notebook"
#: Capabilities the task starts with, only for ``setpriv`` to become the sandbox user.
START_CAPABILITIES = ("CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP")
#: Opens the notebook as stdin while still root, then becomes the sandbox user for good and
#: executes the runner (``exec`` twice: the runner is PID 1). ``$1``/``$2`` are uid and gid.
START_SCRIPT = (
    'uid="$1"; gid="$2"; shift 2; '
    'exec setpriv --reuid="$uid" --regid="$gid" --clear-groups --inh-caps=-all '
    f'--bounding-set=-all --no-new-privs -- "$@" < /run/secrets/{NOTEBOOK_FILE}'
)
#: Task states after which the task never runs (again): restart condition ``none``.
_FINAL_STATES = frozenset({"complete", "failed", "rejected", "shutdown", "orphaned", "remove"})
#: States of a task that has not started its container yet.
_WAITING_STATES = frozenset(
    {"new", "pending", "assigned", "accepted", "preparing", "ready", "starting", "allocated"}
)
#: How often the task's state (and, while it runs, the runner's stdout) is read.
POLL_SECONDS = 0.25
#: How long cleanup retries removing the network while the node releases the task's endpoint.
_RELEASE_SECONDS = 30.0


@dataclass
class _Created:
    """What one run created on the swarm, removed in reverse order when it ends."""

    service: str | None = None
    secret: Secret | None = None
    configs: list[Config] = field(default_factory=list)
    network: Network | None = None


def _too_big(what: str, size: int, remedy: str) -> SandboxError:
    return SandboxError(
        f"{what} is {size} bytes, but a Swarm secret or config holds at most "
        f"{SWARM_OBJECT_LIMIT} bytes (500 KiB), so the Swarm sandbox cannot take it: {remedy}"
    )


def notebook_payload(nb: NotebookNode) -> bytes:
    """The notebook as the runner reads it; :class:`SandboxError` past the secret limit."""
    payload: bytes = nbformat.writes(nb).encode("utf-8")  # type: ignore[no-untyped-call]
    if len(payload) > SWARM_OBJECT_LIMIT:
        raise _too_big(
            "the notebook to grade",
            len(payload),
            "remove large embedded images or attachments from the assignment, or grade it "
            "with the Docker sandbox (`spawner.backend: docker`)",
        )
    return payload


def input_files(resources_dir: Path | None, limit: int) -> list[tuple[str, bytes]]:
    """(path in the task, content) of the runner and of every assignment file."""
    files = [(f"{INPUT_MOUNT}/{RUNNER_MODULE}.py", RUNNER_SOURCE.read_bytes())]
    for path, rel in assignment_files(resources_dir, limit):
        if path.is_dir():
            continue  # Docker makes the folders of the files mounted in them
        size = path.stat().st_size
        if size > SWARM_OBJECT_LIMIT:
            raise _too_big(
                f"assignment file {path}",
                size,
                "make the file smaller (or split it), or grade the course with the Docker "
                "sandbox (`spawner.backend: docker`)",
            )
        files.append((f"{INPUT_MOUNT}/files/{rel.as_posix()}", path.read_bytes()))
    return files


def _runner_command(policy: SandboxPolicy) -> list[str]:
    uid, _, gid = policy.user.partition(":")
    return [
        "/bin/sh",
        "-c",
        START_SCRIPT,
        "learnhub-sandbox",  # $0
        uid,
        gid or uid,
        policy.python,
        "-E",
        "-s",
        "-m",
        RUNNER_MODULE,
        *runner_arguments(policy),
        "--linger",
    ]


def task_template(
    policy: SandboxPolicy,
    name: str,
    labels: Mapping[str, str],
    secret: Secret,
    configs: list[tuple[Config, str]],
    network: Network | None,
) -> TaskTemplate:
    """The sandbox task: the Docker sandbox's limits in Swarm's terms."""
    mounts = [
        # Swarm's tmpfs mounts are nosuid, nodev and noexec; mode 1777 because Swarm cannot
        # set a tmpfs owner, and the sandbox user is the only one left in the container.
        Mount("/tmp", None, type="tmpfs", tmpfs_size=policy.tmp_size, tmpfs_mode=0o1777),  # noqa: S108
        Mount(policy.work_dir, None, type="tmpfs", tmpfs_size=policy.work_size, tmpfs_mode=0o1777),
    ]
    if not any(target.startswith(f"{INPUT_MOUNT}/files/") for _, target in configs):
        # The runner reads the (here empty) files folder; configs make it when there are some.
        mounts.append(
            Mount(f"{INPUT_MOUNT}/files", None, type="tmpfs", read_only=True, tmpfs_size="4k")
        )
    spec = ContainerSpec(
        policy.image,
        command=_runner_command(policy),
        env=[f"{key}={value}" for key, value in policy.env.items()],
        workdir=INPUT_MOUNT,
        user="0:0",  # only until setpriv (START_SCRIPT); the runner runs as policy.user
        labels={"learnhub.role": "grader-sandbox", "learnhub.sandbox": name, **labels},
        mounts=mounts,
        read_only=policy.read_only_root,
        cap_drop=["ALL"],
        cap_add=list(START_CAPABILITIES),
        # The runner must be PID 1 whatever the node's daemon.json says about init.
        init=False,
        # PID 1 ignores SIGTERM: removing the service (the wall-clock backstop) kills at once.
        stop_signal="SIGKILL",
        # Forward names the embedded DNS does not know to the container's own loopback: no
        # query leaves the task (a host nameserver on 127.x would be dialled from the node).
        dns_config=DNSConfig(nameservers=["127.0.0.1"]),
        secrets=[
            SecretReference(
                secret.id, secret.name, filename=NOTEBOOK_FILE, uid="0", gid="0", mode=0o400
            )
        ],
        configs=[
            ConfigReference(config.id, config.name, filename=target, uid="0", gid="0", mode=0o444)
            for config, target in configs
        ],
    )
    resources = Resources(
        cpu_limit=int(policy.cpus * 1e9), mem_limit=int(parse_bytes(policy.memory))
    )
    # docker-py's Resources has no pids argument; the Engine API (1.41) has the field.
    resources["Limits"]["Pids"] = policy.pids
    return TaskTemplate(
        spec,
        resources=resources,
        restart_policy=RestartPolicy(condition="none"),
        placement=list(policy.swarm_constraints) or None,
        networks=None if network is None else [NetworkAttachmentConfig(network.id)],
        # The result travels through the log: bounded, on every node the same driver.
        log_driver=DriverConfig("json-file", {"max-size": policy.max_log_size, "max-file": "1"}),
    )


def _task(client: DockerClient, service: str) -> dict[str, Any] | None:
    tasks: list[dict[str, Any]] = client.api.tasks(filters={"service": service})
    return tasks[0] if tasks else None


def _logs(client: DockerClient, service: str, *, stdout: bool) -> bytes:
    chunks = client.api.service_logs(service, stdout=stdout, stderr=not stdout, is_tty=False)
    return b"".join(chunks)


def _quietly(action: Callable[[], object], what: str, name: str) -> bool:
    """Run a cleanup step; log (never raise) what is left behind and how to clear it."""
    try:
        action()
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as exc:
        log.error(
            "sandbox cleanup failed service=%s %s error=%s; remove it with: docker %s rm %s",
            name,
            what,
            exc,
            what,
            name,
            extra={"container": name, "outcome": "error"},
        )
        return False
    return True


def _remove_network(network: Network, name: str) -> None:
    """Remove the run's network once the node has let go of the task's endpoint."""
    deadline = time.monotonic() + _RELEASE_SECONDS
    while True:
        try:
            network.remove()
            return
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as exc:
            if time.monotonic() > deadline:
                log.error(
                    "sandbox cleanup failed service=%s network error=%s; remove it with: "
                    "docker network rm %s",
                    name,
                    exc,
                    name,
                    extra={"container": name, "outcome": "error"},
                )
                return
            time.sleep(POLL_SECONDS)


def _cleanup(client: DockerClient, created: _Created, name: str) -> None:
    if created.service is not None:
        service = created.service
        # The node removes the task's container a moment later (the swarm does not say when).
        _quietly(lambda: client.api.remove_service(service), "service", name)
    if created.secret is not None:
        _quietly(created.secret.remove, "secret", created.secret.name)
    for config in created.configs:
        _quietly(config.remove, "config", config.name)
    if created.network is not None:
        _remove_network(created.network, name)


@dataclass
class _Waited:
    """How waiting for a task ended."""

    task: dict[str, Any] | None
    #: The wall-clock backstop hit.
    hard_timeout: bool = False
    #: The runner's whole stdout, once its result is all there (it then waits to be killed).
    stdout: bytes | None = None


def _wait(
    client: DockerClient, service: str, policy: SandboxPolicy, name: str, started: float
) -> _Waited:
    """Wait until the runner has printed its result, or the task ended, or the backstop hit.

    The runner lingers after its result (``--linger``): a node removes the container of a
    removed service's task only if the task still runs (Docker 20.10 forgets a finished
    one's container), so the result is read from the log of the running task. Student code
    cannot write to the runner's stdout, which stays empty until the result.

    A task that never started its container by the deadline is a broken sandbox (no node can
    run it, the image is missing), not a timeout of the student's code.
    """
    deadline = started + policy.wall_clock_limit
    task: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        task = _task(client, service)
        state = "" if task is None else str(task["Status"]["State"])
        if state in _FINAL_STATES:
            return _Waited(task)
        if state == "running":
            stdout = _logs(client, service, stdout=True)
            if parse_result(stdout) is not None:
                return _Waited(task, stdout=stdout)
        time.sleep(POLL_SECONDS)
    status = {} if task is None else task["Status"]
    if task is None or status.get("State") in _WAITING_STATES:
        raise SandboxError(
            f"sandbox {name} did not start within {policy.wall_clock_limit:g} s "
            f"(task state {status.get('State', 'none')}: "
            f"{status.get('Err') or status.get('Message') or 'no task'}); check that a node "
            f"matches {list(policy.swarm_constraints) or 'any node'} and can pull {policy.image}"
        )
    return _Waited(task, hard_timeout=True)


def run_notebook_in_swarm(
    nb: NotebookNode,
    policy: SandboxPolicy,
    *,
    resources_dir: Path | None,
    labels: Mapping[str, str] | None = None,
    client: DockerClient | None = None,
) -> SandboxResult:
    """Execute ``nb`` in a fresh one-shot Swarm service and return the executed copy.

    The contract of :func:`grader.sandbox.run_notebook_in_sandbox`; ``client`` talks to a
    swarm manager (default: the environment's engine).
    """
    labels = dict(labels or {})
    context, fields = log_context(labels)
    payload = notebook_payload(nb)
    files = input_files(resources_dir, policy.max_input_bytes)
    own_client = client is None
    try:
        swarm = docker_client() if client is None else client
    except DockerUnreachable as exc:
        raise SandboxError(str(exc)) from exc
    name = f"{policy.name_prefix}{uuid.uuid4().hex[:12]}"
    object_labels = {"learnhub.role": "grader-sandbox", "learnhub.sandbox": name}
    created = _Created()
    started = time.monotonic()
    try:
        try:
            if policy.network_disabled:
                created.network = swarm.networks.create(
                    name, driver="overlay", internal=True, scope="swarm", labels=object_labels
                )
            created.secret = swarm.secrets.create(name=name, data=payload, labels=object_labels)
            targets: list[tuple[Config, str]] = []
            for index, (target, content) in enumerate(files):
                config = swarm.configs.create(
                    name=f"{name}-{index}", data=content, labels=object_labels
                )
                created.configs.append(config)
                targets.append((config, target))
            template = task_template(policy, name, labels, created.secret, targets, created.network)
            service = swarm.api.create_service(
                template,
                name=name,
                labels={**object_labels, **labels},
                # One replica that is never restarted, not a `replicated-job`: Docker 20.10's
                # nodes keep a job's container when its service is removed (exited, or still
                # running), since the manager drops a job's tasks before the node acts on them;
                # a replicated service's running task is shut down and removed by its node.
                mode=ServiceMode("replicated", replicas=1),
                # No virtual IP to allocate: nothing ever connects to a sandbox.
                endpoint_spec=EndpointSpec(mode="dnsrr"),
            )
            created.service = str(service["ID"])
        except docker.errors.DockerException as exc:
            raise SandboxError(f"cannot start Swarm sandbox {name}: {exc}") from exc
        log.info(
            "sandbox started service=%s %s", name, context, extra={**fields, "container": name}
        )
        try:
            waited = _wait(swarm, created.service, policy, name, started)
            task, hard_timeout, stdout, stderr = waited.task, waited.hard_timeout, b"", b""
            if waited.stdout is None and not hard_timeout:
                # The runner ended without lingering: it crashed or was killed.
                stdout = _logs(swarm, created.service, stdout=True)
                stderr = _logs(swarm, created.service, stdout=False)
        except docker.errors.DockerException as exc:
            raise SandboxError(f"Swarm sandbox {name} could not be followed: {exc}") from exc
        status: dict[str, Any] = {} if task is None else task["Status"]
        if not hard_timeout and status.get("State") == "rejected":
            raise SandboxError(
                f"no node could run Swarm sandbox {name}: {status.get('Err') or status}"
            )
        if waited.stdout is not None:
            # The runner reported (its main returns 0) and waits for removal, still running.
            stdout, exit_code = waited.stdout, 0
        else:
            exit_code = int(status.get("ContainerStatus", {}).get("ExitCode", -1))
        log.info(
            "sandbox task done service=%s %s node=%s state=%s exit_code=%s",
            name,
            context,
            None if task is None else task.get("NodeID"),
            status.get("State"),
            exit_code,
            extra={**fields, "container": name},
        )
        # Swarm's task status has no OOMKilled. The runner is PID 1 and ignores every signal
        # but SIGKILL, which short of removing the service (the hard timeout, handled first)
        # or an operator's `docker kill` only the kernel's OOM killer sends it.
        return finish_run(
            nb,
            policy,
            RunEnd(
                name,
                hard_timeout,
                exit_code,
                oom_killed=exit_code == 137,
                stdout=stdout,
                stderr=stderr,
                oom_detail=(
                    "the sandbox was killed (SIGKILL, exit 137) before it reported: most likely "
                    "its memory limit (Swarm does not report OOM kills)"
                ),
            ),
            time.monotonic() - started,
            labels,
        )
    finally:
        _cleanup(swarm, created, name)
        if own_client:
            swarm.close()
