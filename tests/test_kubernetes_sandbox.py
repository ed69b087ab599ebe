"""Grading sandboxes as Kubernetes Jobs (grader/kube_sandbox.py), checked offline.

The Job and its input Secret validate against the Kubernetes schemas and carry the Docker
sandbox's limits, command and environment (compared with what grader/sandbox.py asks Docker
for); what the cluster reports about a run is turned into the Docker sandbox's results. The
runner that talks to the API server (create, attach, wait, read the log) has not run against
a live cluster: nothing here can stand in for an API server, a kubelet and a container runtime
honestly.
"""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbformat import NotebookNode

from grader import sandbox as docker_sandbox
from grader.kube_sandbox import (
    SANDBOX_ROLE,
    collect_input,
    input_secret_manifest,
    job_outcome,
    kube_quantity,
    sandbox_job_manifest,
)
from grader.sandbox import SandboxError, SandboxPolicy
from learnhub_container.sandbox_runner import RESULT_MARKER
from tests.kube_schemas import validate

POLICY = SandboxPolicy(image="learnhub/course-python-foundations:latest", memory="768M", cpus=0.5)
LABELS = {
    "learnhub.course": "python-foundations",
    "learnhub.assignment": "ps1",
    "learnhub.student": "ada@example.org",
    "learnhub.notebook": "problems",
}


def _job(policy: SandboxPolicy = POLICY) -> dict[str, Any]:
    inputs = collect_input(None)
    return sandbox_job_manifest(
        policy,
        name="learnhub-sandbox-0123456789ab",
        namespace="learnhub",
        labels=LABELS,
        input_items=inputs.items,
    )


class _RecordingDocker:
    """Just enough of docker-py for grader.sandbox to say what container it would create."""

    def __init__(self) -> None:
        self.containers = self
        self.created: dict[str, Any] = {}

    def create(self, image: str, **kwargs: Any) -> None:
        self.created = {"image": image, **kwargs}


def test_the_job_validates_and_is_the_docker_sandbox(tmp_path: Path) -> None:
    job = _job()
    validate(job)
    docker = _RecordingDocker()
    docker_sandbox._create_container(docker, POLICY, "x", tmp_path, LABELS)  # type: ignore[arg-type]
    expected = docker.created

    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    # Same image, runner, command line, working folder and environment as on Docker.
    assert container["image"] == expected["image"]
    assert container["command"] == expected["entrypoint"]
    assert container["args"] == expected["command"]
    assert container["workingDir"] == expected["working_dir"]
    assert {e["name"]: e["value"] for e in container["env"]} == expected["environment"]
    # Same limits: memory (binary units, as Docker reads 768M), CPU, wall clock, no retry.
    assert expected["mem_limit"] == "768M"
    assert container["resources"]["limits"] == {"memory": "768Mi", "cpu": "0.5"}
    assert container["resources"]["requests"] == container["resources"]["limits"]
    assert job["spec"]["activeDeadlineSeconds"] == math.ceil(POLICY.wall_clock_limit)
    assert job["spec"]["backoffLimit"] == 0
    assert pod["restartPolicy"] == "Never"
    # Same confinement: user, capabilities, privileges, read-only root, seccomp.
    security = container["securityContext"]
    assert f"{security['runAsUser']}:{security['runAsGroup']}" == expected["user"] == "1000:100"
    assert security["capabilities"] == {"drop": ["ALL"]} and expected["cap_drop"] == ["ALL"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["privileged"] is False
    assert security["readOnlyRootFilesystem"] is expected["read_only"] is True
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    assert pod["enableServiceLinks"] is False
    assert "hostNetwork" not in pod and "hostPID" not in pod and "hostIPC" not in pod
    # Same scratch space: /tmp and the work folder in memory, with Docker's tmpfs sizes.
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounts = {mount["mountPath"]: mount for mount in container["volumeMounts"]}
    assert set(mounts) == {"/sandbox/in", "/tmp", POLICY.work_dir}
    assert set(expected["tmpfs"]) == {"/tmp", POLICY.work_dir}
    assert volumes["tmp"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "64Mi"}
    assert volumes["work"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "128Mi"}
    assert mounts["/sandbox/in"]["readOnly"] is True
    assert volumes["input"]["secret"]["defaultMode"] == 0o444
    # The notebook comes on stdin, as on Docker (stdin_open); never in the input Secret.
    assert container["stdin"] is True and container["stdinOnce"] is True
    assert expected["stdin_open"] is True
    # No network: the label the deny-all NetworkPolicy selects on (tests/
    # test_kubernetes_manifests.py checks that policy), as network_mode=none on Docker.
    assert expected["network_mode"] == "none"
    assert job["spec"]["template"]["metadata"]["labels"]["learnhub.role"] == SANDBOX_ROLE


def test_labels_are_valid_and_the_exact_values_are_annotations() -> None:
    job = _job()
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert labels["learnhub.student"] == "ada-example.org"
    assert job["metadata"]["annotations"]["learnhub.student"] == "ada@example.org"


def test_memory_sizes_in_kubernetes_units() -> None:
    assert kube_quantity("1G") == "1Gi"
    assert kube_quantity("1.5G") == "1.5Gi"
    assert kube_quantity("64m") == "64Mi"
    assert kube_quantity("1048576") == "1048576"
    with pytest.raises(ValueError, match="512 MB"):
        kube_quantity("512 MB")


def test_the_input_secret_holds_the_runner_and_the_files_only(tmp_path: Path) -> None:
    assignment = tmp_path / "ps1"
    (assignment / "data").mkdir(parents=True)
    (assignment / "data" / "points.csv").write_text("x,y\n1,2\n")
    (assignment / "problems.ipynb").write_text("{}")
    (assignment / ".ipynb_checkpoints").mkdir()
    (assignment / ".ipynb_checkpoints" / "notes.txt").write_text("old")
    (tmp_path / "secret.txt").write_text("host file")
    (assignment / "link.txt").symlink_to(tmp_path / "secret.txt")

    inputs = collect_input(assignment)
    paths = {item["path"]: item["key"] for item in inputs.items}
    assert set(paths) == {"learnhub_sandbox_runner.py", "files/data/points.csv"}
    assert base64.b64decode(inputs.data[paths["files/data/points.csv"]]) == b"x,y\n1,2\n"
    secret = input_secret_manifest("learnhub-sandbox-0123456789ab", "learnhub", inputs.data, "u1")
    validate(secret)
    # Deleted with its Job (garbage collection), and mounted by it.
    (owner,) = secret["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"]) == ("Job", "learnhub-sandbox-0123456789ab")
    job = _job()
    assert (
        job["spec"]["template"]["spec"]["volumes"][0]["secret"]["secretName"]
        == (secret["metadata"]["name"])
    )


def test_files_beyond_what_a_secret_holds_are_refused(tmp_path: Path) -> None:
    (tmp_path / "big.bin").write_bytes(b"0" * (1024 * 1024))
    with pytest.raises(SandboxError, match="course image"):
        collect_input(tmp_path)


def _notebook() -> NotebookNode:
    nb: NotebookNode = nbformat.v4.new_notebook()  # type: ignore[no-untyped-call]
    nb.cells = [
        nbformat.v4.new_code_cell("print(1)"),  # type: ignore[no-untyped-call]
        nbformat.v4.new_code_cell("assert True"),  # type: ignore[no-untyped-call]
    ]
    return nb


def _outcome(**reported: Any) -> Any:
    defaults: dict[str, Any] = {
        "deadline_exceeded": False,
        "terminated_reason": "Completed",
        "exit_code": 0,
        "log_text": "",
    }
    return job_outcome(_notebook(), POLICY, name="job", seconds=2.5, **{**defaults, **reported})


def test_a_finished_run_gives_the_runners_result() -> None:
    executed = _notebook()
    executed.cells[0].outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="1\n")  # type: ignore[no-untyped-call]
    ]
    result = {
        "notebook": executed,
        "outcome": "ok",
        "reason": "",
        "detail": "",
        "cell": None,
        "cpu_seconds": 1.25,
    }
    # The student printed a fake result first; the runner's is the last; stderr follows it
    # in the container log (Kubernetes interleaves both streams).
    fake = f"{RESULT_MARKER}\n" + json.dumps({**result, "outcome": "forged"})
    log_text = f"{fake}\n\n{RESULT_MARKER}\n{json.dumps(result)}\nrunner: done\n"
    outcome = _outcome(log_text=log_text)
    assert outcome.outcome == "ok"
    assert outcome.notebook.cells[0].outputs[0]["text"] == "1\n"
    assert outcome.cpu_seconds == 1.25
    assert outcome.container == "job"


def test_the_clusters_verdicts_are_limits() -> None:
    timeout = _outcome(deadline_exceeded=True, terminated_reason="", exit_code=None)
    assert (timeout.outcome, timeout.reason) == ("limit", "timeout")
    # Every code cell carries an error, so no test cell scores (as on Docker).
    errors = [cell.outputs[0]["ename"] for cell in timeout.notebook.cells]
    assert errors == ["Timeout", "NotExecuted"]
    memory = _outcome(terminated_reason="OOMKilled", exit_code=137)
    assert (memory.outcome, memory.reason) == ("limit", "memory")


def test_a_run_without_a_result_is_the_sandboxs_failure() -> None:
    with pytest.raises(SandboxError, match="exited with 1"):
        _outcome(terminated_reason="Error", exit_code=1, log_text="Traceback ...")


def test_grading_on_kubernetes_runs_sandboxes_as_jobs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With `spawner.backend: kubernetes` the grading preprocessor sends every submission to a
    Job in the course pods' namespace, never to a Docker engine the Hub's pod does not have."""
    from grader import preprocessors
    from grader.policy import sandbox_policy
    from hub.courses import load_course
    from hub.settings import load_settings

    root = Path(__file__).resolve().parent.parent
    course = load_course(root / "courses" / "python-foundations").course
    path = tmp_path / "learnhub.yaml"
    path.write_text(
        "spawner:\n  backend: kubernetes\n  kubernetes_namespace: courses\n"
        "  swarm:\n    course_image: registry.example/c-{course}:v2\n"
    )
    policy = sandbox_policy(load_settings(path, {}), course)
    assert (policy.backend, policy.kubernetes_namespace) == ("kubernetes", "courses")
    assert policy.image == (course.image or "registry.example/c-python-foundations:v2")

    calls: list[dict[str, Any]] = []

    async def job(nb: NotebookNode, p: SandboxPolicy, **kwargs: Any) -> Any:
        calls.append({"policy": p, **kwargs})
        return "the job's result"

    def docker(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a Docker sandbox was started on the kubernetes backend")

    monkeypatch.setattr(preprocessors, "run_notebook_in_kube_job", job)
    monkeypatch.setattr(preprocessors, "run_notebook_in_sandbox", docker)
    result = preprocessors.run_sandboxed(_notebook(), policy, resources_dir=None, labels=LABELS)
    assert result == "the job's result"
    assert calls == [
        {"policy": policy, "namespace": "courses", "resources_dir": None, "labels": LABELS}
    ]
