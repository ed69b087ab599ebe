"""Run one notebook in a throwaway Kubernetes Job: the Docker sandbox's rules on a cluster.

The same sandbox as :mod:`grader.sandbox`, in Kubernetes' terms:

- the same runner (``learnhub_container/sandbox_runner.py``), command line and environment;
- the notebook (hidden tests included) reaches the runner on its stdin, through the API
  server's ``attach`` (the container has ``stdin``/``stdinOnce``): never a file, never an
  object in the API server. The runner script and the assignment's other files come in a
  Secret mounted read-only (``<job>-input``, owned by the Job, so deleting the Job removes it);
- memory and CPU limits (requests equal limits, so a sandbox is never squeezed by its
  neighbours), ``activeDeadlineSeconds`` as the wall-clock backstop, no retries;
- uid 1000, gid 100, every capability dropped, no privilege escalation, read-only root, the
  runtime's default seccomp profile; ``/tmp`` and the work folder are memory-backed
  ``emptyDir`` volumes with the Docker sandbox's sizes;
- no network: the pod carries ``learnhub.role: grader-sandbox``, which the NetworkPolicy
  ``learnhub-grader-sandboxes`` (deploy/kubernetes/manifests.yaml) gives no ingress and no
  egress at all; no service account token, no Service environment variables.

Not the same: Kubernetes has no per-pod process limit in the pod spec. The Docker sandbox's
``pids`` is the kubelet's ``podPidsLimit`` on the nodes that run sandboxes (docs/how-to/
kubernetes.md). The executed notebook travels through the container log, which the kubelet
rotates at ``containerLogMaxSize`` (10 MiB by default).

:func:`sandbox_job_manifest` and :func:`input_secret_manifest` are pure and validated in CI
(tests/test_kubernetes_sandbox.py); :func:`job_outcome` turns what the cluster reports into a
:class:`~grader.sandbox.SandboxResult` and is tested offline; :func:`run_notebook_in_kube_job`,
which talks to the API server, has not run against a live cluster.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import math
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
from nbformat import NotebookNode

from grader.sandbox import (
    INPUT_MOUNT,
    RUNNER_MODULE,
    RunEnd,
    SandboxError,
    SandboxPolicy,
    SandboxResult,
    finish_run,
    log_context,
    runner_arguments,
)
from learnhub_container import sandbox_runner

log = logging.getLogger("learnhub.grader.kube_sandbox")

#: The label the sandboxes' NetworkPolicy selects on (deploy/kubernetes/manifests.yaml).
ROLE_LABEL = "learnhub.role"
SANDBOX_ROLE = "grader-sandbox"
#: The container's name in the Job's pod.
CONTAINER = "runner"
#: A Secret holds at most 1 MiB of data; the runner script counts towards it.
MAX_SECRET_BYTES = 1024 * 1024
#: A finished Job the grader could not delete (it died) is removed by Kubernetes after this.
TTL_AFTER_FINISHED = 600
#: Waiting reasons of a container that will not start by waiting longer.
_STUCK = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError"}
)
_SIZE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)([kKmMgGtT]?)$")


def kube_quantity(size: str) -> str:
    """A Docker size (``512m``, ``1G``; binary units) as a Kubernetes quantity (``512Mi``)."""
    match = _SIZE.match(size)
    if match is None:
        raise ValueError(f"{size!r} is not a size like 512M or 1G")
    number, unit = match.groups()
    return number + (unit.upper() + "i" if unit else "")


def _label_value(value: str) -> str:
    """``value`` made a valid label value (63 characters of ``[A-Za-z0-9._-]``, alphanumeric
    at both ends); the exact value is in the Job's annotations."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", value)[:63]
    return cleaned.strip("-._")


def sandbox_job_manifest(
    policy: SandboxPolicy,
    *,
    name: str,
    namespace: str,
    labels: Mapping[str, str],
    input_items: list[dict[str, str]],
) -> dict[str, Any]:
    """The Job that runs one notebook; ``input_items`` map the input Secret's keys to paths."""
    uid, _, gid = policy.user.partition(":")
    user, group = int(uid), int(gid or uid)
    pod_labels = {
        ROLE_LABEL: SANDBOX_ROLE,
        **{key: _label_value(value) for key, value in labels.items()},
    }
    resources = {"memory": kube_quantity(policy.memory), "cpu": str(policy.cpus)}
    command_args = runner_arguments(policy)
    container = {
        "name": CONTAINER,
        "image": policy.image,
        "imagePullPolicy": "IfNotPresent",
        # The runner is PID 1, as in the Docker sandbox (it ignores signals from student code).
        "command": [policy.python, "-E", "-s", "-m", RUNNER_MODULE],
        "args": command_args,
        "workingDir": INPUT_MOUNT,
        # The notebook arrives on stdin through `attach`; stdinOnce closes it when we detach.
        "stdin": True,
        "stdinOnce": True,
        "env": [{"name": key, "value": value} for key, value in policy.env.items()],
        "resources": {"limits": resources, "requests": resources},
        "securityContext": {
            "runAsUser": user,
            "runAsGroup": group,
            "runAsNonRoot": True,
            "privileged": False,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": policy.read_only_root,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [
            {"name": "input", "mountPath": INPUT_MOUNT, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - the pod's own emptyDir
            {"name": "work", "mountPath": policy.work_dir},
        ],
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": pod_labels,
            "annotations": dict(labels),
        },
        "spec": {
            # One attempt: a retry would run the student's code again with no notebook.
            "backoffLimit": 0,
            "activeDeadlineSeconds": math.ceil(policy.wall_clock_limit),
            "ttlSecondsAfterFinished": TTL_AFTER_FINISHED,
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "terminationGracePeriodSeconds": 0,
                    "containers": [container],
                    "volumes": [
                        {
                            "name": "input",
                            "secret": {
                                "secretName": input_secret_name(name),
                                "items": input_items,
                                "defaultMode": 0o444,
                            },
                        },
                        {
                            "name": "tmp",
                            "emptyDir": {
                                "medium": "Memory",
                                "sizeLimit": kube_quantity(policy.tmp_size),
                            },
                        },
                        {
                            "name": "work",
                            "emptyDir": {
                                "medium": "Memory",
                                "sizeLimit": kube_quantity(policy.work_size),
                            },
                        },
                    ],
                },
            },
        },
    }


def input_secret_name(job: str) -> str:
    """The name of the Secret with a Job's input files."""
    return f"{job}-input"


@dataclass(frozen=True)
class SandboxInput:
    """The input Secret's data (base64) and how its keys map to paths under the mount."""

    data: dict[str, str]
    items: list[dict[str, str]]


def collect_input(resources_dir: Path | None, limit: int = MAX_SECRET_BYTES) -> SandboxInput:
    """The runner and the assignment's other files, as the Docker sandbox's bind folder has
    them (``learnhub_sandbox_runner.py``, ``files/...``); never a notebook, never a symlink."""
    runner = Path(sandbox_runner.__file__).read_bytes()
    data = {"runner": base64.b64encode(runner).decode()}
    items = [{"key": "runner", "path": f"{RUNNER_MODULE}.py"}]
    total = len(runner)
    if resources_dir is not None:
        for path in sorted(resources_dir.rglob("*")):
            rel = path.relative_to(resources_dir)
            if path.is_symlink() or path.suffix == ".ipynb" or ".ipynb_checkpoints" in rel.parts:
                continue
            if not path.is_file():
                continue
            content = path.read_bytes()
            total += len(content)
            if total > limit:
                raise SandboxError(
                    f"assignment files in {resources_dir} exceed the {limit} bytes a Kubernetes "
                    "Secret holds; put large data files into the course image instead"
                )
            key = f"f{len(items)}"
            data[key] = base64.b64encode(content).decode()
            items.append({"key": key, "path": f"files/{rel.as_posix()}"})
    return SandboxInput(data, items)


def input_secret_manifest(
    job: str, namespace: str, data: Mapping[str, str], owner_uid: str
) -> dict[str, Any]:
    """The Secret with a Job's input, owned by the Job (deleted with it)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": input_secret_name(job),
            "namespace": namespace,
            "labels": {ROLE_LABEL: SANDBOX_ROLE},
            "ownerReferences": [
                {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "name": job,
                    "uid": owner_uid,
                }
            ],
        },
        "immutable": True,
        "data": dict(data),
    }


def job_outcome(
    nb: NotebookNode,
    policy: SandboxPolicy,
    *,
    name: str,
    seconds: float,
    deadline_exceeded: bool,
    terminated_reason: str,
    exit_code: int | None,
    log_text: str,
    labels: Mapping[str, str] | None = None,
) -> SandboxResult:
    """What the Job's run means, from what the cluster reports about it.

    ``deadline_exceeded``: the Job failed with ``DeadlineExceeded`` (or the grader gave up
    waiting); ``terminated_reason`` and ``exit_code``: the container's terminated state
    (``OOMKilled``, ``Error``, ``Completed``). A run without a result that no limit explains
    is the sandbox's failure (:class:`SandboxError`), not the student's.
    """
    end = RunEnd(
        name=name,
        hard_timeout=deadline_exceeded,
        exit_code=-1 if exit_code is None else exit_code,
        oom_killed=terminated_reason == "OOMKilled",
        stdout=log_text.encode(),
        stderr=log_text[-2000:].encode(),
    )
    return finish_run(nb, policy, end, seconds, labels or {})


def _container_state(pod: Any) -> tuple[Any, Any]:
    """(waiting, terminated) states of the runner container, or None for each."""
    for status in pod.status.container_statuses or []:
        if status.name == CONTAINER and status.state is not None:
            return status.state.waiting, status.state.terminated
    return None, None


async def _wait_for_pod(core: Any, namespace: str, job: str, deadline: float) -> Any:
    """The Job's pod once its container runs (or already ended)."""
    loop = asyncio.get_running_loop()
    while loop.time() < deadline:
        pods = await core.list_namespaced_pod(
            namespace, label_selector=f"batch.kubernetes.io/job-name={job}"
        )
        for pod in pods.items:
            waiting, terminated = _container_state(pod)
            if waiting is not None and waiting.reason in _STUCK:
                raise SandboxError(
                    f"sandbox {job} cannot start: {waiting.reason}: {waiting.message}; check "
                    "that the course image exists where the cluster's nodes pull images from"
                )
            if pod.status.phase != "Pending" or terminated is not None:
                return pod
        await asyncio.sleep(0.5)
    raise SandboxError(f"sandbox {job} did not start before its deadline")


async def _send_notebook(ws_client: Any, namespace: str, pod: str, nb: NotebookNode) -> None:
    """Write ``nb`` to the runner's stdin and detach, which closes it (``stdinOnce``)."""
    from kubernetes_asyncio.client import CoreV1Api
    from kubernetes_asyncio.stream.ws_client import STDIN_CHANNEL

    payload = nbformat.writes(nb).encode("utf-8")  # type: ignore[no-untyped-call]
    connection: Any = await CoreV1Api(ws_client).connect_get_namespaced_pod_attach(
        pod,
        namespace,
        container=CONTAINER,
        stdin=True,
        stdout=False,
        stderr=False,
        tty=False,
        _preload_content=False,
    )
    chunk = 64 * 1024
    async with connection as ws:
        for start in range(0, len(payload), chunk):
            await ws.send_bytes(bytes([STDIN_CHANNEL]) + payload[start : start + chunk])


async def _wait_for_job(batch: Any, namespace: str, job: str, deadline: float) -> bool:
    """Wait until the Job ends; True when it ended by its deadline (or ours passed)."""
    loop = asyncio.get_running_loop()
    while loop.time() < deadline:
        status = (await batch.read_namespaced_job_status(job, namespace)).status
        for condition in status.conditions or []:
            if condition.status != "True":
                continue
            if condition.type == "Failed":
                return bool(condition.reason == "DeadlineExceeded")
            if condition.type == "Complete":
                return False
        await asyncio.sleep(0.5)
    return True


async def run_notebook_in_kube_job(
    nb: NotebookNode,
    policy: SandboxPolicy,
    *,
    namespace: str,
    resources_dir: Path | None,
    labels: Mapping[str, str] | None = None,
) -> SandboxResult:
    """Execute ``nb`` in a fresh sandbox Job and return the executed copy.

    The Kubernetes counterpart of :func:`grader.sandbox.run_notebook_in_sandbox`, with the same
    result and errors. Runs in a pod whose service account may create Jobs and Secrets, read
    pods and their logs and attach to them in ``namespace`` (the Role ``learnhub-grader`` of
    deploy/kubernetes/manifests.yaml). UNTESTED against a live cluster.
    """
    from kubernetes_asyncio import config
    from kubernetes_asyncio.client import ApiClient, BatchV1Api, CoreV1Api
    from kubernetes_asyncio.stream import WsApiClient

    labels = dict(labels or {})
    context, _ = log_context(labels)
    name = f"{policy.name_prefix}{uuid.uuid4().hex[:12]}"
    inputs = await asyncio.to_thread(collect_input, resources_dir)
    job = sandbox_job_manifest(
        policy, name=name, namespace=namespace, labels=labels, input_items=inputs.items
    )
    # The pod's own service account (the Hub's, in the chart).
    config.load_incluster_config()  # type: ignore[no-untyped-call]
    started = time.monotonic()
    loop = asyncio.get_running_loop()
    # Our own backstop a little after the Job's, so the cluster's verdict normally comes first.
    deadline = loop.time() + policy.wall_clock_limit + policy.startup_grace
    async with ApiClient() as client, WsApiClient() as ws_client:
        # Any: the manifests are plain dicts, which the client serialises as they are.
        batch: Any = BatchV1Api(client)
        core: Any = CoreV1Api(client)
        try:
            created = await batch.create_namespaced_job(namespace, job)
        except Exception as exc:
            raise SandboxError(f"cannot create sandbox job {name}: {exc}") from exc
        try:
            secret = input_secret_manifest(name, namespace, inputs.data, created.metadata.uid)
            await core.create_namespaced_secret(namespace, secret)
            pod = await _wait_for_pod(core, namespace, name, deadline)
            log.info("sandbox started job=%s %s", name, context, extra={"job": name})
            await _send_notebook(ws_client, namespace, pod.metadata.name, nb)
            deadline_exceeded = await _wait_for_job(batch, namespace, name, deadline)
            terminated, log_text = None, ""
            if not deadline_exceeded:
                # Past its deadline the Job controller deletes the pod: nothing to read then.
                pod = await core.read_namespaced_pod(pod.metadata.name, namespace)
                _, terminated = _container_state(pod)
                log_text = await core.read_namespaced_pod_log(
                    pod.metadata.name, namespace, container=CONTAINER
                )
        except SandboxError:
            raise
        except Exception as exc:
            raise SandboxError(f"sandbox job {name} failed: {exc}") from exc
        finally:
            try:
                await batch.delete_namespaced_job(
                    name, namespace, propagation_policy="Background", grace_period_seconds=0
                )
            except Exception as exc:
                log.error(
                    "sandbox job not deleted job=%s %s error=%s; delete it with: kubectl "
                    "delete job -n %s %s",
                    name,
                    context,
                    exc,
                    namespace,
                    name,
                    extra={"job": name, "outcome": "error"},
                )
        outcome = job_outcome(
            nb,
            policy,
            name=name,
            seconds=time.monotonic() - started,
            deadline_exceeded=deadline_exceeded,
            terminated_reason=getattr(terminated, "reason", "") or "",
            exit_code=getattr(terminated, "exit_code", None),
            log_text=str(log_text),
            labels=labels,  # finish_run logs the outcome, as on the other backends
        )
    return outcome
