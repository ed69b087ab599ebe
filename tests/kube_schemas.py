"""What the Kubernetes tests share: the schema version, validation, LearnHub's hub config as the
Zero to JupyterHub chart runs it.

Offline: kubernetes-validate ships the Kubernetes API's JSON schemas; nothing here talks to a
cluster.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from traitlets.config import Config

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy" / "kubernetes"
VALUES = DEPLOY / "values.yaml"

#: The Kubernetes version every LearnHub manifest is validated against (one place). Zero to
#: JupyterHub 4.x and its main branch need 1.32 or later (its Chart.yaml `kubeVersion`).
KUBERNETES_VERSION = "1.34.0"

#: Stand-ins for the `learnhub-secrets` Secret the values file reads through hub.extraEnv.
SECRETS = {
    "LEARNHUB_CLI_TOKEN": "a" * 40,
    "LEARNHUB_COOKIE_SECRET": "b" * 64,
    "LEARNHUB_SERVICE_TOKEN": "c" * 40,
    "LEARNHUB_OAUTH_CLIENT_SECRET": "d" * 40,
    "LEARNHUB_STRIPE_SECRET_KEY": "sk_live_" + "e" * 40,
    "LEARNHUB_STRIPE_WEBHOOK_SECRETS": "whsec_" + "f" * 40,
}


#: Label values and the name part of label keys (the schemas say only "string"; the API
#: server refuses anything else, e.g. a user name with an ``@``).
_LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def validate(manifest: dict[str, Any]) -> None:
    """Raise unless ``manifest`` is a valid object of the pinned Kubernetes version.

    Strict: a field the schema does not know (a typo, a field of another version) is an error,
    as the API server's strict field validation (``kubectl apply``'s default) makes it. Label
    syntax, which the schemas leave out, is checked too, on the object and its pod template.
    """
    kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
    for node in walk(manifest):
        if isinstance(node, dict) and isinstance(node.get("labels"), dict):
            for key, value in node["labels"].items():
                _check_label(key, value)


def _check_label(key: str, value: str) -> None:
    prefix, _, name = key.rpartition("/")
    assert name and _LABEL_NAME.match(name), f"label key {key!r} is not a valid label name"
    assert not prefix or (len(prefix) <= 253 and _DNS_SUBDOMAIN.match(prefix)), key
    assert _LABEL_NAME.match(value), f"label {key}={value!r}: not a valid label value"


def load_documents(path: Path) -> list[dict[str, Any]]:
    """Every non-empty YAML document of ``path``."""
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def values() -> dict[str, Any]:
    """deploy/kubernetes/values.yaml."""
    return dict(yaml.safe_load(VALUES.read_text()))


def settings_file(tmp_path: Path) -> Path:
    """The settings the values file mounts, with the Hub image's paths pointed at this checkout."""
    data = values()["hub"]["extraFiles"]["learnhub-settings"]["data"]
    data = {**data, "courses_dir": str(ROOT / "courses")}
    data["hub"] = {**data["hub"], "data_dir": str(tmp_path / "data")}
    path = tmp_path / "learnhub.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def chart_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    """Run the values file's ``hub.extraConfig.learnhub`` as the chart's hub would.

    ``c`` carries what the chart's own jupyterhub_config.py has set before it (the proxy's
    API URL, no proxy started by the Hub); the secrets come from the environment as
    ``hub.extraEnv`` puts them there.
    """
    path = settings_file(tmp_path)
    code = values()["hub"]["extraConfig"]["learnhub"]
    code = code.replace("/etc/learnhub/learnhub.yaml", str(path))
    code = code.replace("/srv/learnhub/spawner_config.py", str(ROOT / "spawner_config.py"))
    for name, value in {**SECRETS, "LEARNHUB_CONFIG": str(path)}.items():
        monkeypatch.setenv(name, value)
    c = Config()
    c.ConfigurableHTTPProxy.api_url = "http://proxy-api:8001"
    c.ConfigurableHTTPProxy.should_start = False
    exec(compile(code, "extraConfig.learnhub", "exec"), {"c": c})
    return c


def walk(node: Any) -> Iterator[Any]:
    """Every dict and list inside ``node`` (``node`` included), depth first."""
    yield node
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
    for child in children:
        yield from walk(child)
