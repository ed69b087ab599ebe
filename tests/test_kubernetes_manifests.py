"""deploy/kubernetes/manifests.yaml: validated against the Kubernetes schemas, and read.

What the NetworkPolicies mean is checked by reading them (no cluster, no CNI here): which pods
each one selects, given the labels LearnHub's pods really carry (built by hub/kube_spawner.py's
configuration and grader/kube_sandbox.py), and what each lets in and out. NetworkPolicies add
up: a pod may do what ANY policy that selects it allows.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from grader.kube_sandbox import collect_input, sandbox_job_manifest
from grader.sandbox import SandboxPolicy
from hub.kube_spawner import COURSE_SERVER_ROLE, INTERNET_LABEL, NETWORK_ACCESS_HUB, ROLE_LABEL
from tests.kube_schemas import DEPLOY, load_documents, validate, values

MANIFESTS = load_documents(DEPLOY / "manifests.yaml")
#: The labels of the chart's own pods (its templates; seen in the one-off render).
HUB_POD = {"app": "jupyterhub", "component": "hub", "release": "learnhub"}
PROXY_POD = {
    "app": "jupyterhub",
    "component": "proxy",
    "release": "learnhub",
    NETWORK_ACCESS_HUB: "true",
    "hub.jupyter.org/network-access-singleuser": "true",
}
KUBE_DNS = {"k8s-app": "kube-dns"}


def _course_pod(internet: bool) -> dict[str, str]:
    """A course server's labels: the chart's and KubeSpawner's, and LearnHub's."""
    return {
        "app": "jupyterhub",
        "component": "singleuser-server",
        "release": "learnhub",
        NETWORK_ACCESS_HUB: "true",
        ROLE_LABEL: COURSE_SERVER_ROLE,
        INTERNET_LABEL: "true" if internet else "false",
        "learnhub.course": "python-foundations",
    }


def _sandbox_pod() -> dict[str, str]:
    job = sandbox_job_manifest(
        SandboxPolicy(),
        name="learnhub-sandbox-0",
        namespace="learnhub",
        labels={"learnhub.course": "python-foundations", "learnhub.student": "ada"},
        input_items=collect_input(None).items,
    )
    labels: dict[str, str] = job["spec"]["template"]["metadata"]["labels"]
    return labels


def _named(kind: str, name: str) -> dict[str, Any]:
    (doc,) = [d for d in MANIFESTS if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def _matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, "only matchLabels selectors are read here"
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def _policies_for(labels: dict[str, str]) -> list[dict[str, Any]]:
    return [
        doc
        for doc in MANIFESTS
        if doc["kind"] == "NetworkPolicy" and _matches(doc["spec"]["podSelector"], labels)
    ]


def _ports(rule: dict[str, Any]) -> set[tuple[int, str]]:
    return {(port["port"], port["protocol"]) for port in rule["ports"]}


def _peer_allows_ip(peer: dict[str, Any], address: str) -> bool:
    if "ipBlock" not in peer:
        return False
    ip = ipaddress.ip_address(address)
    block = peer["ipBlock"]
    network = ipaddress.ip_network(block["cidr"])
    if ip.version != network.version or ip not in network:
        return False
    return not any(
        ip in ipaddress.ip_network(cidr)
        for cidr in block.get("except", [])
        if ipaddress.ip_network(cidr).version == ip.version
    )


def _egress_allows_ip(labels: dict[str, str], address: str) -> bool:
    return any(
        _peer_allows_ip(peer, address)
        for policy in _policies_for(labels)
        for rule in policy["spec"].get("egress", [])
        for peer in rule.get("to", [])
    )


@pytest.mark.parametrize(
    "doc", MANIFESTS, ids=[f"{d['kind']}/{d['metadata']['name']}" for d in MANIFESTS]
)
def test_every_manifest_validates(doc: dict[str, Any]) -> None:
    validate(doc)


def test_course_servers_reach_only_the_hub_api_the_exchange_and_dns() -> None:
    settings = values()["hub"]["extraFiles"]["learnhub-settings"]["data"]["hub"]
    (policy,) = _policies_for(_course_pod(internet=False))
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    hub_rule, dns_rule = spec["egress"]
    (hub_peer,) = hub_rule["to"]
    assert _matches(hub_peer["podSelector"], HUB_POD) and set(hub_peer) == {"podSelector"}
    assert _ports(hub_rule) == {(settings["hub_port"], "TCP"), (settings["service_port"], "TCP")}
    (dns_peer,) = dns_rule["to"]
    assert dns_peer["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "kube-system"
    }
    assert _matches(dns_peer["podSelector"], KUBE_DNS)
    assert _ports(dns_rule) == {(53, "UDP"), (53, "TCP")}
    # In: the proxy and the Hub, to the server's port only; never another course server.
    (ingress,) = spec["ingress"]
    (peer,) = ingress["from"]
    assert _matches(peer["podSelector"], PROXY_POD)
    assert not _matches(peer["podSelector"], _course_pod(internet=True))
    assert _ports(ingress) == {(8888, "TCP")}


@pytest.mark.parametrize(
    "address",
    [
        "169.254.169.254",  # cloud metadata (AWS, GCP, Azure, ...)
        "fd00:ec2::254",  # AWS metadata over IPv6
        "10.0.0.1",
        "172.16.0.1",
        "192.168.1.1",
        "100.64.0.1",  # shared address space (CGNAT; some clusters' pod networks)
        "127.0.0.1",
        "::1",
        "fe80::1",
    ],
)
def test_no_course_server_reaches_private_or_metadata_addresses(address: str) -> None:
    assert not _egress_allows_ip(_course_pod(internet=False), address)
    assert not _egress_allows_ip(_course_pod(internet=True), address)


def test_internet_courses_reach_public_addresses_only_they() -> None:
    for public in ("93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"):
        assert _egress_allows_ip(_course_pod(internet=True), public)
        assert not _egress_allows_ip(_course_pod(internet=False), public)


def test_grading_sandboxes_have_no_network() -> None:
    (policy,) = _policies_for(_sandbox_pod())
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in policy["spec"] and "egress" not in policy["spec"]
    # And no policy for other pods lets traffic to a sandbox: none of them names its labels.
    for doc in MANIFESTS:
        if doc["kind"] != "NetworkPolicy" or doc is policy:
            continue
        for rule in doc["spec"].get("ingress", []) + doc["spec"].get("egress", []):
            for peer in rule.get("from", []) + rule.get("to", []):
                assert "podSelector" not in peer or not _matches(
                    peer["podSelector"], _sandbox_pod()
                )


def test_only_the_hub_reaches_postgres() -> None:
    postgres = _named("StatefulSet", "postgres")["spec"]["template"]["metadata"]["labels"]
    (policy,) = _policies_for(postgres)
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"] and "egress" not in spec
    (rule,) = spec["ingress"]
    (peer,) = rule["from"]
    assert _matches(peer["podSelector"], HUB_POD)
    assert not _matches(peer["podSelector"], _course_pod(internet=True))
    assert _ports(rule) == {(5432, "TCP")}


def test_postgres_serves_the_databases_the_values_name() -> None:
    data = values()["hub"]["extraFiles"]["learnhub-settings"]["data"]["database"]
    service = _named("Service", "postgres")
    container = _named("StatefulSet", "postgres")["spec"]["template"]["spec"]["containers"][0]
    env = {item["name"]: item for item in container["env"]}
    init = _named("ConfigMap", "learnhub-postgres-init")["data"]["learnhub.sql"]
    for url in (data["hub_url"], data["learnhub_url"], values()["hub"]["db"]["url"]):
        assert url.startswith(
            f"postgresql+psycopg://{env['POSTGRES_USER']['value']}@"
            f"{service['metadata']['name']}.learnhub.svc.cluster.local:5432/"
        )
    assert data["hub_url"].endswith("/" + env["POSTGRES_DB"]["value"])
    assert f"CREATE DATABASE {data['learnhub_url'].rsplit('/', 1)[1]} " in init
    assert env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "learnhub-secrets",
        "key": "postgres-password",
    }


def test_the_grader_may_run_jobs_and_nothing_more() -> None:
    role = _named("Role", "learnhub-grader")
    granted = {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    # What grader/kube_sandbox.run_notebook_in_kube_job calls, and only that.
    assert granted == {
        ("batch", "jobs", "create"),
        ("batch", "jobs", "delete"),
        ("batch", "jobs/status", "get"),
        ("", "secrets", "create"),
        ("", "pods", "get"),
        ("", "pods", "list"),
        ("", "pods/log", "get"),
        ("", "pods/attach", "get"),
        ("", "pods/attach", "create"),
    }
    binding = _named("RoleBinding", "learnhub-grader")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "learnhub-grader",
    }
    # The chart's Hub service account (the grading worker runs in the Hub's pod).
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "hub"}]
    assert not [d for d in MANIFESTS if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]
