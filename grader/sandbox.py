"""Run one notebook in a locked-down, throwaway Docker container.

This is the only place where LearnHub executes student code for grading. The container has
no network, limited memory, CPU and processes, a read-only root file system, a tmpfs
``/tmp`` and a tmpfs scratch work dir, runs as an unprivileged user with every capability
dropped, and gets an explicit minimal environment (nothing of the grader's environment).

The notebook reaches the runner on the container's stdin, never as a file: it carries the
hidden tests, and the kernel runs with the runner's uid, so any file the runner can read, the
student's code can read and print (a cell that runs before the first hidden test keeps its
outputs in the feedback). The runner, non-dumpable before it reads a byte, reads stdin to the
end before it starts the kernel (see ``learnhub_container/sandbox_runner.py``). The
assignment's other files and the runner script reach the container through a read-only bind
of a fresh temporary folder that contains only them; the executed notebook comes back on the
container's stdout. The container is always removed.

With ``policy.backend == "swarm"`` the same run is a one-shot Swarm service on the cluster
(:mod:`grader.swarm_sandbox`), which shares this module's policy, input selection and
judgement of the outcome (:func:`finish_run`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shutil
import socket
import stat
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import docker.errors
import nbformat
import requests.exceptions
from docker.client import DockerClient
from docker.models.containers import Container
from docker.types import LogConfig
from nbformat import NotebookNode

from grader.owner import owner_alive, process_owner
from hub.docker_engine import docker_client as engine_client
from hub.errors import DockerUnreachable
from hub.settings import ResourceLimits, SandboxSettings, SpawnerSettings
from learnhub_container import sandbox_runner
from learnhub_container.sandbox_runner import RESULT_MARKER, mark_unfinished

log = logging.getLogger("learnhub.grader.sandbox")

RUNNER_MODULE = "learnhub_sandbox_runner"
RUNNER_SOURCE = Path(sandbox_runner.__file__)
INPUT_MOUNT = "/sandbox/in"

#: The whole environment student code sees (besides the image's own ENV lines).
#: The /tmp paths are inside the container, on its private tmpfs (hence the S108 noqa).
DEFAULT_ENV: Mapping[str, str] = {
    "PATH": "/opt/learnhub/venv/bin:/usr/local/bin:/usr/bin:/bin",
    "HOME": "/tmp",  # noqa: S108
    "LANG": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "1",
    "MPLBACKEND": "Agg",
    "JUPYTER_RUNTIME_DIR": "/tmp/jupyter-runtime",  # noqa: S108
    "IPYTHONDIR": "/tmp/ipython",  # noqa: S108
    # Stock nbgrader sets this while autograding; notebooks may rely on it.
    "NBGRADER_EXECUTION": "autograde",
}


#: The labels every sandbox container carries (:func:`sandbox_labels`).
ROLE_LABEL = "learnhub.role"
SANDBOX_ROLE = "grader-sandbox"
PLATFORM_LABEL = "learnhub.prefix"
OWNER_LABEL = "learnhub.owner"


class SandboxError(RuntimeError):
    """The sandbox itself failed (not the student's code): the submission is not graded."""


#: The limits' defaults are the settings' (``grading.sandbox``); they are declared only there.
_LIMITS = SandboxSettings()


@dataclass(frozen=True)
class SandboxPolicy:
    """Limits and isolation settings for one sandboxed notebook run.

    The grading flow builds it from the settings and the course (:mod:`grader.policy`); the
    defaults here are the settings' own, for tests and benchmarks that build one directly.
    """

    image: str = SpawnerSettings().image
    #: Memory limit in Docker notation; swap is disabled (memswap = memory).
    memory: str = _LIMITS.memory or ResourceLimits().memory
    cpus: float = _LIMITS.cpus
    pids: int = _LIMITS.pids
    #: CPU seconds one cell may use before it is interrupted and marked as a timeout.
    cell_timeout: int = _LIMITS.cell_timeout
    #: CPU seconds the whole notebook (kernel start included) may use in the container.
    notebook_timeout: float = _LIMITS.notebook_timeout
    #: Extra wall-clock seconds for container start and teardown before a hard kill.
    startup_grace: float = 30.0
    #: CPU limits times this is the wall-clock backstop (for code that waits without
    #: computing). CPU time does not grow with host load; wall-clock time did: an autograde
    #: took 3x as long on a saturated host (169 s instead of 56 s), so 4x leaves headroom.
    wall_clock_factor: float = 4.0
    network_disabled: bool = True
    read_only_root: bool = True
    tmp_size: str = "64m"
    work_dir: str = "/sandbox/work"
    work_size: str = "128m"
    user: str = "1000:100"
    python: str = "/opt/learnhub/venv/bin/python"
    name_prefix: str = "learnhub-sandbox-"
    #: The platform's ``spawner.name_prefix``, labelled on every sandbox (``learnhub.prefix``,
    #: as on course containers): a worker removing a dead worker's sandboxes touches no other
    #: platform's on the same engine.
    platform: str = SpawnerSettings().name_prefix
    env: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_ENV))
    #: Upper bound for the assignment files copied in next to the notebook.
    max_input_bytes: int = 50 * 1024 * 1024
    #: Bound on the container log (the executed notebook travels through it).
    max_log_size: str = "64m"
    #: Where the bind-mounted input folders are made; the Docker engine must see this path.
    host_tmp_dir: str | None = None
    #: ``docker``: a container on this host's engine; ``swarm``: a one-shot Swarm service on
    #: the cluster (:mod:`grader.swarm_sandbox`); ``kubernetes``: a Job in
    #: ``kubernetes_namespace`` (:mod:`grader.kube_sandbox`); all with the same limits.
    backend: Literal["docker", "swarm", "kubernetes"] = "docker"
    #: Swarm placement constraints of the sandbox jobs (``swarm`` backend only).
    swarm_constraints: tuple[str, ...] = ()
    #: The namespace of the sandbox Jobs (``kubernetes`` backend only).
    kubernetes_namespace: str = "learnhub"

    @property
    def wall_clock_limit(self) -> float:
        """Seconds after which the grader kills the container, whatever it is doing."""
        return self.notebook_timeout * self.wall_clock_factor + self.startup_grace


@dataclass
class SandboxResult:
    """The executed notebook and how the sandbox run ended.

    ``outcome`` is ``"ok"`` or ``"limit"``; ``reason`` is empty or one of ``timeout``,
    ``memory``, ``pids``, ``kernel-died``; ``detail`` is a sentence for the instructor.
    ``cpu_seconds`` is the CPU time the container used, as its runner last read it (None
    when the sandbox was killed before reporting).
    """

    notebook: NotebookNode
    outcome: str
    reason: str
    detail: str
    cell: int | None
    seconds: float
    container: str
    cpu_seconds: float | None = None

    def as_metadata(self) -> dict[str, Any]:
        """The summary stored in ``metadata.learnhub.sandbox`` of the graded notebook."""
        return {
            "outcome": self.outcome,
            "reason": self.reason,
            "detail": self.detail,
            "cell": self.cell,
            "seconds": round(self.seconds, 3),
            "cpu_seconds": None if self.cpu_seconds is None else round(self.cpu_seconds, 3),
        }


def assignment_files(resources_dir: Path | None, limit: int) -> Iterator[tuple[Path, Path]]:
    """The assignment's files and folders the sandbox gets, as (path, path relative to
    ``resources_dir``), parents first; :class:`SandboxError` once the files pass ``limit`` bytes.
    """
    if resources_dir is None:
        return
    total = 0
    for path in sorted(resources_dir.rglob("*")):
        rel = path.relative_to(resources_dir)
        # Symlinks could point at host files (a submission can contain one); other
        # notebooks are earlier graded outputs, not inputs.
        if path.is_symlink() or path.suffix == ".ipynb" or ".ipynb_checkpoints" in rel.parts:
            continue
        if path.is_file():
            total += path.stat().st_size
            if total > limit:
                raise SandboxError(f"assignment files in {resources_dir} exceed {limit} bytes")
        elif not path.is_dir():
            continue
        yield path, rel


def _prepare_input(workdir: Path, resources_dir: Path | None, limit: int) -> None:
    """Fill the bind folder: the runner and the assignment's other files.

    Never the notebook: everything in this folder is readable by student code (it goes on
    stdin, :func:`_send_notebook`).
    """
    shutil.copyfile(RUNNER_SOURCE, workdir / f"{RUNNER_MODULE}.py")
    files = workdir / "files"
    files.mkdir()
    for path, rel in assignment_files(resources_dir, limit):
        if path.is_dir():
            (files / rel).mkdir(parents=True, exist_ok=True)
        else:
            (files / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, files / rel)
    # The container user is not the grader's user: it must read (never write) the folder.
    readable_dir = 0o755
    for dirpath, dirnames, filenames in os.walk(workdir):
        os.chmod(dirpath, readable_dir)
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
        for name in dirnames:
            os.chmod(os.path.join(dirpath, name), readable_dir)


def runner_arguments(policy: SandboxPolicy) -> list[str]:
    """The runner's arguments, the same on every backend (its limits come from ``policy``)."""
    return [
        "--input",
        INPUT_MOUNT,
        "--work",
        policy.work_dir,
        "--cell-timeout",
        str(policy.cell_timeout),
        "--notebook-timeout",
        str(policy.notebook_timeout),
        "--wall-clock-factor",
        str(policy.wall_clock_factor),
    ]


def _create_container(
    client: DockerClient,
    policy: SandboxPolicy,
    name: str,
    input_dir: Path,
    labels: Mapping[str, str],
) -> Container:
    command = runner_arguments(policy)
    uid, _, gid = policy.user.partition(":")
    tmpfs = {  # container paths, on tmpfs
        "/tmp":  # noqa: S108
        f"rw,nosuid,nodev,size={policy.tmp_size},mode=1777",
        policy.work_dir: (
            f"rw,nosuid,nodev,size={policy.work_size},uid={uid},gid={gid or uid},mode=0700"
        ),
    }
    container: Container = client.containers.create(
        policy.image,
        # The runner is PID 1 (no init): init ignores signals from student code and can kill
        # every other process in the namespace before it reports.
        entrypoint=[policy.python, "-E", "-s", "-m", RUNNER_MODULE],
        command=command,
        name=name,
        working_dir=INPUT_MOUNT,
        # The notebook comes on stdin; closing our end closes the container's (EOF).
        # docker-py sets StdinOnce only for a non-detached config (create never blocks).
        stdin_open=True,
        user=policy.user,
        environment=dict(policy.env),
        network_mode="none" if policy.network_disabled else "bridge",
        read_only=policy.read_only_root,
        tmpfs=tmpfs,
        mem_limit=policy.memory,
        memswap_limit=policy.memory,
        nano_cpus=int(policy.cpus * 1e9),
        pids_limit=policy.pids,
        cap_drop=["ALL"],
        security_opt=["no-new-privileges:true"],
        volumes={str(input_dir): {"bind": INPUT_MOUNT, "mode": "ro"}},
        labels={**labels, **sandbox_labels(policy.platform)},
        log_config=LogConfig(
            type=LogConfig.types.JSON, config={"max-size": policy.max_log_size, "max-file": "1"}
        ),
        detach=False,
    )
    return container


def sandbox_labels(platform: str, owner: str | None = None) -> dict[str, str]:
    """The labels that say a container is a sandbox of ``platform`` started by ``owner``
    (``host:pid``, default this process), which removes it when the run ends."""
    return {
        ROLE_LABEL: SANDBOX_ROLE,
        PLATFORM_LABEL: platform,
        OWNER_LABEL: owner or process_owner(),
    }


def remove_abandoned_sandboxes(
    platform: str, owner: str, client: DockerClient | None = None
) -> list[str]:
    """Remove, running or exited, the sandbox containers of ``platform`` that ``owner`` (a
    dead process's ``host:pid``) started and can no longer remove; return their names.

    Found by their labels only (:func:`sandbox_labels`), never by name. The caller knows the
    owner is dead (:func:`grader.worker.recover`). :class:`~hub.errors.DockerUnreachable`
    when the engine does not answer; its other errors are docker-py's.
    """
    return _remove_sandboxes(platform, sandbox_labels(platform, owner), lambda _: True, client)


def remove_orphaned_sandboxes(platform: str, client: DockerClient | None = None) -> list[str]:
    """Remove, running or exited, the sandbox containers of ``platform`` whose owner, a process
    of this host, no longer runs (:func:`grader.owner.owner_alive`); return their names.

    A killed `learnhub grader autograde` leaves its sandboxes with no job row that would lead
    a worker to them (:func:`remove_abandoned_sandboxes`); a grading worker calls this once,
    before its first job. Another platform's sandboxes, another host's and a live process's stay.
    Errors as :func:`remove_abandoned_sandboxes`.
    """
    labels = {ROLE_LABEL: SANDBOX_ROLE, PLATFORM_LABEL: platform}

    def orphaned(container: Container) -> bool:
        owner = container.labels.get(OWNER_LABEL, "")
        return owner_alive(owner, _created(container)) is False

    return _remove_sandboxes(platform, labels, orphaned, client)


def _created(container: Container) -> float | None:
    """When ``container`` was created (seconds since the epoch); None when Docker does not say."""
    created = container.attrs.get("Created")
    if isinstance(created, int | float):  # the list API's form
        return float(created)
    # The inspect API's form, RFC 3339 with nanoseconds, which datetime does not take.
    found = re.fullmatch(r"(.+T[\d:]+)(\.\d+)?(Z|[+-][\d:]+)", str(created or ""))
    if found is None:
        return None
    whole, fraction, zone = found.groups()
    moment = datetime.fromisoformat(whole + ("+00:00" if zone == "Z" else zone))
    return moment.timestamp() + float(fraction or 0)


def _remove_sandboxes(
    platform: str,
    labels: Mapping[str, str],
    dead: Callable[[Container], bool],
    client: DockerClient | None,
) -> list[str]:
    """Remove the containers that carry ``labels`` and whose owner is ``dead``; their names."""
    own_client = client is None
    docker_client = engine_client() if client is None else client
    filters = [f"{key}={value}" for key, value in labels.items()]
    removed: list[str] = []
    try:
        # ignore_removed: one that ends (and goes) while listed is no error.
        found = docker_client.containers.list(
            all=True, filters={"label": filters}, ignore_removed=True
        )
        for container in found:
            if not dead(container):
                continue
            owner = container.labels.get(OWNER_LABEL, "")
            context = f"owner={owner} platform={platform}"
            if not _remove(container, context):
                continue
            removed.append(container.name)
            log.warning(
                "sandbox of a dead process removed container=%s %s",
                container.name,
                context,
                extra={"container": container.name, "owner": owner, "outcome": "removed"},
            )
    finally:
        if own_client:
            docker_client.close()
    return removed


def _send_notebook(
    client: DockerClient, container: Container, nb: NotebookNode, timeout: float
) -> None:
    """Start ``container`` and write ``nb`` to its stdin, then close it.

    Attached before the start, like ``docker run -i``. The payload is nbformat's JSON in
    UTF-8, which never contains the attach stream's detach keys (control bytes are escaped
    in JSON strings, UTF-8 multi-byte sequences have the high bit set).
    """
    payload = nbformat.writes(nb).encode("utf-8")  # type: ignore[no-untyped-call]
    stream = client.api.attach_socket(container.id, params={"stdin": 1, "stream": 1})
    # docker-py returns the raw socket, or a SocketIO around it on a unix socket.
    sock: socket.socket = getattr(stream, "_sock", stream)
    try:
        container.start()
        sock.settimeout(timeout)
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
    finally:
        stream.close()
        sock.close()


def _as_notebook(data: Any) -> NotebookNode:
    node: NotebookNode = nbformat.from_dict(data)  # type: ignore[no-untyped-call]
    return node


def _copy_notebook(nb: NotebookNode) -> NotebookNode:
    return _as_notebook(json.loads(json.dumps(nb)))


def _optional_float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def parse_result(output: bytes) -> dict[str, Any] | None:
    """The runner's result document in its output; None while (or if) it is not all there.

    The LAST marker is the runner's: it kills every other process before printing. Only the
    first JSON value after it is read: a cluster's container log (Kubernetes) interleaves the
    runner's stderr after it.
    """
    text = output.decode("utf-8", errors="replace")
    _, sep, tail = text.rpartition(RESULT_MARKER + "\n")
    if not sep:
        return None
    try:
        result, _ = json.JSONDecoder().raw_decode(tail)
    except json.JSONDecodeError:
        return None
    return result if isinstance(result, dict) else None


def _remove(container: Container, context: str) -> bool:
    """Remove ``container`` (running or not); False when it is left behind (logged, with the
    command that clears it)."""
    try:
        container.remove(force=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as exc:
        if exc.status_code != 409:  # 409: removal already in progress
            # Never mask the grading outcome (or the error) that is on its way out; say what
            # is left behind and how to clear it.
            log.error(
                "sandbox not removed container=%s %s error=%s; remove it with: docker rm -f %s",
                container.name,
                context,
                exc,
                container.name,
                extra={"container": container.name, "outcome": "error"},
            )
            return False
    log.debug("sandbox removed container=%s %s", container.name, context)
    return True


def _aborted(
    nb: NotebookNode, outcome: str, reason: str, detail: str, seconds: float, name: str
) -> SandboxResult:
    """A result for a run that produced no notebook: every code cell carries the error."""
    copy = _copy_notebook(nb)
    ename = {"timeout": "Timeout", "memory": "MemoryLimit"}.get(reason, "SandboxAborted")
    cell = mark_unfinished(copy, 0, ename, detail)
    return SandboxResult(copy, outcome, reason, detail, cell, seconds, name)


@dataclass(frozen=True)
class RunEnd:
    """How a sandbox run ended, as its backend saw it: what :func:`finish_run` judges."""

    #: The container's (or Swarm service's) name.
    name: str
    #: Killed by the grader at the wall-clock backstop.
    hard_timeout: bool
    exit_code: int
    #: The engine says the memory limit killed the sandbox (not only a process in it).
    oom_killed: bool
    stdout: bytes
    stderr: bytes
    #: Why ``oom_killed`` is believed, for the instructor.
    oom_detail: str = "the sandbox was killed: memory limit exceeded"


def log_context(labels: Mapping[str, str]) -> tuple[str, dict[str, Any]]:
    """The ``key=value`` text and the structured fields of ``labels`` for log lines."""
    context = " ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in sorted(labels.items()))
    # Structured fields (course, assignment, student, notebook) for log handlers.
    fields: dict[str, Any] = {k.rsplit(".", 1)[-1]: v for k, v in labels.items()}
    return context, fields


def finish_run(
    nb: NotebookNode,
    policy: SandboxPolicy,
    end: RunEnd,
    seconds: float,
    labels: Mapping[str, str],
) -> SandboxResult:
    """The result of a finished run, the same for every backend; :class:`SandboxError` when
    the sandbox broke (no result, and no limit explains why)."""
    context, fields = log_context(labels)
    name = end.name
    result = None if end.hard_timeout else parse_result(end.stdout)
    if end.hard_timeout:
        detail = f"notebook exceeded {policy.wall_clock_limit:g} s; the sandbox was killed"
        outcome = _aborted(nb, "limit", "timeout", detail, seconds, name)
    elif end.exit_code == 0 and result is not None:
        outcome = SandboxResult(
            notebook=_as_notebook(result["notebook"]),
            outcome=str(result["outcome"]),
            reason=str(result["reason"]),
            detail=str(result["detail"]),
            cell=result.get("cell"),
            seconds=seconds,
            container=name,
            cpu_seconds=_optional_float(result.get("cpu_seconds")),
        )
    elif end.oom_killed:
        outcome = _aborted(nb, "limit", "memory", end.oom_detail, seconds, name)
    else:
        tail = end.stderr.decode("utf-8", errors="replace")[-2000:]
        log.error(
            "sandbox failed container=%s %s exit_code=%s stderr=%r",
            name,
            context,
            end.exit_code,
            tail,
            extra={**fields, "container": name, "outcome": "error"},
        )
        raise SandboxError(f"sandbox {name} exited with {end.exit_code} and no result: {tail}")
    log.info(
        "sandbox finished container=%s %s outcome=%s reason=%s seconds=%.2f",
        name,
        context,
        outcome.outcome,
        outcome.reason or "-",
        seconds,
        extra={
            **fields,
            "container": name,
            "outcome": outcome.outcome,
            "reason": outcome.reason,
        },
    )
    return outcome


def run_notebook_in_sandbox(
    nb: NotebookNode,
    policy: SandboxPolicy,
    *,
    resources_dir: Path | None,
    labels: Mapping[str, str] | None = None,
    client: DockerClient | None = None,
) -> SandboxResult:
    """Execute ``nb`` in a fresh sandbox container and return the executed copy.

    ``resources_dir`` is the assignment folder whose other (non-notebook) files the
    notebook may read; ``labels`` (course, assignment, student, notebook) go onto the
    container and into the logs. Limits hit by student code give a ``"limit"`` result with
    error outputs in the offending and all later code cells; a broken sandbox (image missing,
    engine unreachable, runner crash) raises :class:`SandboxError`.

    Only the Docker backend runs here; :func:`grader.preprocessors.run_sandboxed` sends a
    ``policy.backend == "swarm"`` run to :func:`grader.swarm_sandbox.run_notebook_in_swarm`.
    """
    labels = dict(labels or {})
    if policy.backend != "docker":
        # The other backends build on this module's helpers, so they cannot be imported here
        # (no import cycles); the grading preprocessor picks them (grader.preprocessors).
        raise SandboxError(f"run_notebook_in_sandbox runs Docker sandboxes, not {policy.backend!r}")
    context, fields = log_context(labels)
    own_client = client is None
    try:
        docker_client = engine_client() if client is None else client
    except DockerUnreachable as exc:
        raise SandboxError(str(exc)) from exc
    name = f"{policy.name_prefix}{uuid.uuid4().hex[:12]}"
    started = time.monotonic()
    container: Container | None = None
    try:
        with tempfile.TemporaryDirectory(
            prefix="learnhub-sandbox-", dir=policy.host_tmp_dir
        ) as tmp:
            input_dir = Path(tmp)
            _prepare_input(input_dir, resources_dir, policy.max_input_bytes)
            try:
                container = _create_container(docker_client, policy, name, input_dir, labels)
                _send_notebook(docker_client, container, nb, policy.wall_clock_limit)
            except (docker.errors.DockerException, OSError) as exc:
                raise SandboxError(f"cannot start sandbox {name}: {exc}") from exc
            log.info(
                "sandbox started container=%s %s",
                name,
                context,
                extra={**fields, "container": name},
            )
            hard_timeout = False
            try:
                status = container.wait(timeout=policy.wall_clock_limit)
                exit_code = int(status.get("StatusCode", -1))
            except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
                hard_timeout, exit_code = True, -1
                try:
                    container.kill()
                except docker.errors.APIError as exc:
                    # 409: it stopped on its own just now; anything else leaves it running.
                    if exc.status_code != 409:
                        raise SandboxError(
                            f"sandbox {name} exceeded {policy.wall_clock_limit:g} s and the "
                            f"engine could not kill it: {exc}"
                        ) from exc
            try:
                container.reload()
                oom_killed = bool(container.attrs["State"].get("OOMKilled"))
                stdout = container.logs(stdout=True, stderr=False)
                stderr = container.logs(stdout=False, stderr=True)
            except docker.errors.APIError as exc:
                # 404/409: the container vanished under us (removed by someone else).
                raise SandboxError(f"sandbox {name} disappeared before it reported: {exc}") from exc
        return finish_run(
            nb,
            policy,
            RunEnd(name, hard_timeout, exit_code, oom_killed, stdout, stderr),
            time.monotonic() - started,
            labels,
        )
    finally:
        if container is not None:
            _remove(container, context)
        if own_client:
            docker_client.close()


async def run_notebook_in_sandbox_async(
    nb: NotebookNode,
    policy: SandboxPolicy,
    *,
    resources_dir: Path | None,
    labels: Mapping[str, str] | None = None,
) -> SandboxResult:
    """:func:`run_notebook_in_sandbox` on a worker thread, for the hub's event loop."""
    return await asyncio.to_thread(
        run_notebook_in_sandbox,
        nb,
        policy,
        resources_dir=resources_dir,
        labels=labels,
    )
