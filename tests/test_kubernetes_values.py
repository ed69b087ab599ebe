"""deploy/kubernetes/values.yaml (Zero to JupyterHub's chart values), checked offline.

In CI: the settings file it mounts passes LearnHub's own validation (production mode); its
`extraConfig` runs against what the chart's config has set before it and leaves the Hub
reachable from pods through its Service; every KubeSpawner option LearnHub sets is a trait;
the chart's NetworkPolicies are configured as LearnHub's own (deploy/kubernetes/manifests.yaml)
expect. The pods and PVCs that config makes are validated in tests/test_kubernetes_spawner.py.

Not in CI: rendering the chart. The chart cannot be obtained where CI runs (no Helm
repository, no GitHub), and fetched upstream code is not committed. It was rendered once by
hand with Helm 4.2.3's engine (helm-python-sdk 0.2.2) from z2jh main at 4.3.2-226-g48ea50e3:
the values passed the chart's values.schema and the 35 rendered objects validated against
Kubernetes 1.34; docs/how-to/kubernetes.md says how to repeat it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hub.settings import load_settings
from tests.kube_schemas import DEPLOY, SECRETS, chart_config, load_documents, settings_file, values


@pytest.fixture(scope="module")
def chart_values() -> dict[str, Any]:
    return values()


def test_the_mounted_settings_pass_production_validation(tmp_path: Path) -> None:
    settings = load_settings(settings_file(tmp_path), SECRETS)
    assert settings.mode == "production"
    assert settings.spawner.backend == "kubernetes"


def test_extra_config_reaches_the_hub_through_its_service(
    chart_values: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = chart_config(tmp_path, monkeypatch)
    port = chart_values["hub"]["service"]["extraPorts"][0]["port"]
    assert c.JupyterHub.hub_bind_url == "http://0.0.0.0:8081"
    assert c.JupyterHub.hub_connect_url == "http://hub:8081"
    assert c.LearnHubKubeSpawner.exchange_url == f"http://hub:{port}/services/learnhub/exchange/"
    assert c.ConfigurableHTTPProxy.api_url == "http://proxy-api:8001"
    assert c.ConfigurableHTTPProxy.should_start is False
    (service,) = [s for s in c.JupyterHub.services if s["name"] == "learnhub"]
    assert service["url"] == f"http://hub:{port}"
    # Every option set on the spawner is a trait of it (KubeSpawner's, or LearnHub's course
    # traits on top); a misspelt one would be ignored with only a warning.
    spawner_class = c.JupyterHub.spawner_class
    assert "KubeSpawner" in [k.__name__ for k in spawner_class.__mro__]
    traits = set(spawner_class.class_trait_names())
    for section in ("KubeSpawner", "LearnHubKubeSpawner"):
        assert set(c[section]) <= traits, set(c[section]) - traits


def test_the_values_say_what_learnhub_configures(
    chart_values: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # LearnHub's config wins over the chart's singleuser.*; the two must not disagree, or the
    # values would mislead whoever reads them.
    c = chart_config(tmp_path, monkeypatch)
    storage = chart_values["singleuser"]["storage"]
    assert storage["dynamic"]["pvcNameTemplate"] == c.KubeSpawner.pvc_name_template
    assert storage["capacity"] == c.KubeSpawner.storage_capacity
    assert storage["dynamic"]["storageAccessModes"] == c.KubeSpawner.storage_access_modes
    assert storage["homeMountPath"] == c.KubeSpawner.volume_mounts[0]["mountPath"]


def test_network_policies_fit_learnhubs_own(chart_values: dict[str, Any]) -> None:
    settings = chart_values["hub"]["extraFiles"]["learnhub-settings"]["data"]
    port = chart_values["hub"]["service"]["extraPorts"][0]["port"]
    assert settings["hub"]["service_port"] == port
    # Course servers: LearnHub's policies only (manifests.yaml); the chart's would add to them.
    assert chart_values["singleuser"]["networkPolicy"]["enabled"] is False
    # The Hub's pod: the chart's policy, plus the LearnHub port for the pods it admits to the
    # Hub API (the proxy, course servers).
    hub = chart_values["hub"]["networkPolicy"]
    assert hub["enabled"] is True
    assert [p["port"] for rule in hub["ingress"] for p in rule["ports"]] == [port]
    (peer,) = hub["ingress"][0]["from"]
    assert peer == {"podSelector": {"matchLabels": {"hub.jupyter.org/network-access-hub": "true"}}}
    # The proxy reaches the LearnHub service (it routes /services/learnhub/ there).
    proxy = chart_values["proxy"]["chp"]["networkPolicy"]
    assert [p["port"] for rule in proxy["egress"] for p in rule["ports"]] == [port]
    # Neither the Hub (every secret) nor the proxies reach the cloud metadata service.
    for policy in (hub, proxy, chart_values["proxy"]["traefik"]["networkPolicy"]):
        rules = policy["egressAllowRules"]
        assert rules["cloudMetadataServer"] is False
        assert rules["dnsPortsCloudMetadataServer"] is False


def test_the_data_folder_is_a_volume(chart_values: dict[str, Any]) -> None:
    hub = chart_values["hub"]
    data_dir = hub["extraFiles"]["learnhub-settings"]["data"]["hub"]["data_dir"]
    (mount,) = [m for m in hub["extraVolumeMounts"] if m["mountPath"] == data_dir]
    (volume,) = [v for v in hub["extraVolumes"] if v["name"] == mount["name"]]
    claim = volume["persistentVolumeClaim"]["claimName"]
    claims = [
        doc["metadata"]["name"]
        for doc in load_documents(DEPLOY / "manifests.yaml")
        if doc["kind"] == "PersistentVolumeClaim"
    ]
    assert claim in claims
