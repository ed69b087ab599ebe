"""deploy/kubernetes/values.yaml, checked offline (no helm, no chart, no cluster here).

The settings file it mounts must pass LearnHub's own validation (production mode), its
`extraConfig` must run against what Zero to JupyterHub's config has set before it and leave the
Hub reachable from pods, and every KubeSpawner option LearnHub sets must be a KubeSpawner trait.
Rendering the chart and validating the manifests needs the chart and helm: not done here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from traitlets.config import Config

from hub.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent
VALUES = ROOT / "deploy" / "kubernetes" / "values.yaml"
SECRETS = {
    "LEARNHUB_CLI_TOKEN": "a" * 40,
    "LEARNHUB_COOKIE_SECRET": "b" * 64,
    "LEARNHUB_SERVICE_TOKEN": "c" * 40,
    "LEARNHUB_OAUTH_CLIENT_SECRET": "d" * 40,
    "LEARNHUB_STRIPE_SECRET_KEY": "sk_live_" + "e" * 40,
    "LEARNHUB_STRIPE_WEBHOOK_SECRETS": "whsec_" + "f" * 40,
}


@pytest.fixture(scope="module")
def values() -> dict[str, Any]:
    return dict(yaml.safe_load(VALUES.read_text()))


@pytest.fixture
def settings_file(values: dict[str, Any], tmp_path: Path) -> Path:
    """The mounted settings, with the paths of the Hub's image pointed at this checkout."""
    data = values["hub"]["extraFiles"]["learnhub-settings"]["data"]
    data = {**data, "courses_dir": str(ROOT / "courses")}
    data["hub"] = {**data["hub"], "data_dir": str(tmp_path / "data")}
    path = tmp_path / "learnhub.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_mounted_settings_pass_production_validation(settings_file: Path) -> None:
    settings = load_settings(settings_file, SECRETS)
    assert settings.mode == "production"
    assert settings.spawner.backend == "kubernetes"


def test_extra_config_reaches_the_hub_through_its_service(
    values: dict[str, Any], settings_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = values["hub"]["extraConfig"]["learnhub"]
    code = code.replace("/etc/learnhub/learnhub.yaml", str(settings_file))
    code = code.replace("/srv/learnhub/spawner_config.py", str(ROOT / "spawner_config.py"))
    for name, value in {**SECRETS, "LEARNHUB_CONFIG": str(settings_file)}.items():
        monkeypatch.setenv(name, value)
    c = Config()
    # What the chart's jupyterhub_config.py has set when extraConfig runs.
    c.ConfigurableHTTPProxy.api_url = "http://proxy-api:8001"
    c.ConfigurableHTTPProxy.should_start = False
    exec(compile(code, "extraConfig.learnhub", "exec"), {"c": c})
    port = values["hub"]["service"]["extraPorts"][0]["port"]
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


def test_network_policies_open_only_the_exchange_port(values: dict[str, Any]) -> None:
    port = values["hub"]["service"]["extraPorts"][0]["port"]
    settings = values["hub"]["extraFiles"]["learnhub-settings"]["data"]
    assert settings["hub"]["service_port"] == port
    egress = values["singleuser"]["networkPolicy"]
    assert egress["enabled"] is True
    assert not any(
        egress["egressAllowRules"][k]
        for k in ("cloudMetadataServer", "privateIPs", "nonPrivateIPs")
    )
    assert [p["port"] for rule in egress["egress"] for p in rule["ports"]] == [port]
    ingress = values["hub"]["networkPolicy"]["ingress"]
    assert [p["port"] for rule in ingress for p in rule["ports"]] == [port]
