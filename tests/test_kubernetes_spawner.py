"""The pods and PVCs KubeSpawner would create for LearnHub, built and validated offline.

LearnHub's spawner is configured exactly as the Zero to JupyterHub chart's hub would configure
it (deploy/kubernetes/values.yaml's ``hub.extraConfig``, tests/kube_schemas.py), then
KubeSpawner's own manifest builders make the objects it sends to the API server; they are
serialised as its Kubernetes client serialises them and validated against the Kubernetes
schemas. No cluster: the kubeconfig points at a closed loopback port that nothing calls.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from jupyterhub.objects import Hub
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.config import kube_config
from tornado.web import HTTPError
from traitlets.config import Config

from tests.kube_schemas import chart_config, validate

KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: offline, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: offline, user: {token: never-sent}}]
contexts: [{name: offline, context: {cluster: offline, user: offline, namespace: learnhub}}]
current-context: offline
"""


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    # KubeSpawner loads a client configuration when it is made (not in a pod: a kubeconfig,
    # whose default path kubernetes_asyncio reads from $KUBECONFIG at import).
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig))
    return chart_config(tmp_path, monkeypatch)


def _spawner(c: Config, user: str, course: str, groups: list[str]) -> Any:
    """LearnHub's spawner for ``user``'s server of ``course``, as JupyterHub makes it."""
    hub = Hub(
        bind_url=c.JupyterHub.hub_bind_url,
        connect_url=c.JupyterHub.hub_connect_url,
        base_url="/hub/",
    )
    member = SimpleNamespace(
        name=user,
        id=7,
        url=f"/user/{user}/",
        admin=False,
        groups=[SimpleNamespace(name=name) for name in groups],
    )
    server = SimpleNamespace(name=course, server=None, last_activity=None)
    return c.JupyterHub.spawner_class(
        config=c,
        user=member,
        hub=hub,
        orm_spawner=server,
        api_token="t" * 32,
        oauth_client_id=f"jupyterhub-user-{user}-{course}",
    )


async def _manifests(c: Config, user: str, course: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The pod and the PVC of a learner's course server, as sent to the API server."""
    spawner = _spawner(c, user, course, [f"course-{course}"])
    # What start() does before KubeSpawner's own start: the access check and the course.
    spawner.configure_course(spawner.authorize_course())
    pod = await spawner.get_pod_manifest()
    pvc = spawner.get_pvc_manifest()
    async with ApiClient() as client:
        serialised: tuple[dict[str, Any], dict[str, Any]] = (
            client.sanitize_for_serialization(pod),
            client.sanitize_for_serialization(pvc),
        )
    return serialised


async def test_course_pod_and_pvc_validate_and_are_confined(config: Config) -> None:
    pod, pvc = await _manifests(config, "ada@example.org", "python-foundations")
    validate(pod)
    validate(pvc)

    spec = pod["spec"]
    (container,) = spec["containers"]
    security = container["securityContext"]
    assert security["runAsUser"] == 1000
    assert security["runAsGroup"] == 100
    assert security["runAsNonRoot"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["privileged"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["readOnlyRootFilesystem"] is True
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["securityContext"]["fsGroup"] == 100
    assert spec["automountServiceAccountToken"] is False
    assert spec["enableServiceLinks"] is False
    # The course's limits (course.yaml: 1G, 1 CPU), not the chart's defaults.
    assert container["resources"]["limits"] == {"cpu": 1.0, "memory": 1024**3}
    # Materials come in the course image: no hostPath anywhere.
    assert container["image"] == "learnhub/course-python-foundations:latest"
    assert all("hostPath" not in volume for volume in spec["volumes"])

    # The home is the PVC of this member and course; /tmp is the pod's own memory.
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    assert mounts == {"/home/jovyan": "home", "/tmp": "tmp"}
    claim = volumes["home"]["persistentVolumeClaim"]["claimName"]
    assert claim == pvc["metadata"]["name"]
    assert claim.startswith("learnhub-ada-example-org-")
    assert claim.endswith("--python-foundations")
    assert volumes["tmp"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "256Mi"}
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert pvc["spec"]["resources"]["requests"]["storage"] == "2G"

    # The labels the NetworkPolicies select on: the chart's (Hub API ingress), LearnHub's.
    labels = pod["metadata"]["labels"]
    assert labels["hub.jupyter.org/network-access-hub"] == "true"
    assert labels["learnhub.role"] == "course-server"
    assert labels["learnhub.internet"] == "false"
    assert labels["learnhub.course"] == "python-foundations"
    assert labels["component"] == "singleuser-server"

    # The Hub and the exchange through the Hub's Service, never a loopback address.
    env = {item["name"]: item["value"] for item in container["env"]}
    assert env["JUPYTERHUB_API_URL"] == "http://hub:8081/hub/api"
    assert env["JUPYTERHUB_ACTIVITY_URL"].startswith("http://hub:8081/hub/api/")
    assert env["LEARNHUB_EXCHANGE_URL"] == "http://hub:10101/services/learnhub/exchange/"
    assert not [name for name, value in env.items() if "127.0.0.1" in value]


async def test_a_pvc_per_member_and_course(config: Config) -> None:
    names = {
        (user, course): (await _manifests(config, user, course))[1]["metadata"]["name"]
        for user in ("ada", "grace")
        for course in ("python-foundations", "algorithms-in-python")
    }
    assert len(set(names.values())) == 4, names
    assert names["ada", "algorithms-in-python"] == "learnhub-ada--algorithms-in-python"


async def test_course_limits_follow_course_yaml(config: Config) -> None:
    pod, _ = await _manifests(config, "ada", "algorithms-in-python")
    validate(pod)
    (container,) = pod["spec"]["containers"]
    # course.yaml of algorithms-in-python: 1536M, in JupyterHub's (binary) units as on Docker.
    assert container["resources"]["limits"]["memory"] == 1536 * 1024**2


async def test_the_course_keeps_the_charts_labels(config: Config) -> None:
    # Labels an operator adds in a later extraConfig stay: starting a course adds the course's
    # labels to the configured ones (it used to replace them, dropping network-access-hub).
    config.KubeSpawner.extra_labels = {
        **config.KubeSpawner.extra_labels,
        "example.org/team": "{username}",
    }
    pod, _ = await _manifests(config, "ada", "python-foundations")
    labels = pod["metadata"]["labels"]
    assert labels["example.org/team"] == "ada"
    assert labels["hub.jupyter.org/network-access-hub"] == "true"


async def test_no_pod_without_access(config: Config) -> None:
    spawner = _spawner(config, "mallory", "python-foundations", ["course-algorithms-in-python"])
    with pytest.raises(HTTPError) as refused:
        spawner.authorize_course()
    assert refused.value.status_code == 403
