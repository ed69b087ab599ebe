"""The most exposed process holds only its own secrets; the data folder is its owner's alone.

On a real hub (local spawner: no containers needed) started with every secret an operator
sets, this reads what the running LearnHub service process actually holds
(``/proc/<pid>/environ``) and the modes of what the hub and the service wrote.
"""

from __future__ import annotations

import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.settings import load_settings
from tests.harness import ROOT, HubProcess, hub_settings

HUB_ONLY = {
    "LEARNHUB_ADMIN_TOKEN",
    "LEARNHUB_COOKIE_SECRET",
    "LEARNHUB_SERVICE_TOKEN",
    "LEARNHUB_OAUTH_CLIENT_SECRET",
    "LEARNHUB_DEMO_PASSWORD",
}


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    workdir = tmp_path_factory.mktemp("privilege-hub")
    process = HubProcess(
        workdir=workdir,
        settings=hub_settings(workdir, courses_dir=ROOT / "courses", backend="local"),
        extra_env={
            "LEARNHUB_COOKIE_SECRET": secrets.token_hex(32),
            "LEARNHUB_SERVICE_TOKEN": secrets.token_hex(32),
            "LEARNHUB_OAUTH_CLIENT_SECRET": "oauth-" + secrets.token_hex(16),
            "LEARNHUB_DEMO_PASSWORD": "demo-" + secrets.token_hex(8),
            "LEARNHUB_STRIPE_WEBHOOK_SECRETS": "whsec_" + secrets.token_hex(16),
        },
    )
    process.start()
    try:
        yield process
    finally:
        process.stop()


def service_environment(hub: HubProcess) -> dict[str, str]:
    response = hub.api("GET", "/services/learnhub")
    assert response.status_code == 200, response.text
    pid = response.json()["pid"]
    assert pid, response.json()
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(): v.decode(errors="replace") for k, v in pairs}


def test_service_holds_none_of_the_hubs_secrets(hub: HubProcess) -> None:
    env = service_environment(hub)
    leaked = sorted(HUB_ONLY & env.keys())
    assert leaked == [], f"the LearnHub service was given {leaked}"
    values = set(env.values())
    for name in HUB_ONLY - {"LEARNHUB_ADMIN_TOKEN", "LEARNHUB_SERVICE_TOKEN"}:
        assert hub.extra_env[name] not in values, name
    assert hub.admin_token not in values
    # What it needs: its own payment secret, and its Hub token from JupyterHub itself.
    assert (
        env["LEARNHUB_STRIPE_WEBHOOK_SECRETS"] == hub.extra_env["LEARNHUB_STRIPE_WEBHOOK_SECRETS"]
    )
    assert env["JUPYTERHUB_API_TOKEN"] == hub.extra_env["LEARNHUB_SERVICE_TOKEN"]


def test_the_service_still_loads_production_settings_with_only_its_secrets(
    tmp_path: Path,
) -> None:
    path = tmp_path / "learnhub.yaml"
    path.write_text(
        "mode: production\npayments:\n  provider: stripe\n"
        "hub:\n  public_url: https://learn.example.org/\n"
        "  subdomain_host: https://learn.example.org\n"
    )
    env = {"LEARNHUB_STRIPE_SECRET_KEY": "sk_test_x", "LEARNHUB_STRIPE_WEBHOOK_SECRETS": "whsec_x"}
    assert load_settings(path, env, process="service").mode == "production"
    with pytest.raises(Exception, match="LEARNHUB_COOKIE_SECRET"):
        load_settings(path, env)  # the Hub (and the CLI) still need theirs


def test_data_folder_and_files_are_private(hub: HubProcess) -> None:
    data_dir = Path(hub.settings["hub"]["data_dir"])
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    written = [p for p in data_dir.rglob("*") if not p.is_symlink()]
    names = {p.name for p in written}
    assert {"jupyterhub.sqlite", "learnhub.sqlite", "exchange"} <= names
    loose = [
        f"{p} {oct(stat.S_IMODE(p.stat().st_mode))}" for p in written if p.stat().st_mode & 0o077
    ]
    assert loose == []
