"""The most exposed process holds only its own secrets, runs unprivileged, and reaches only its
own part of the data folder.

On a real hub (local spawner: no containers needed) started as root (as the test command runs)
with every secret an operator sets, this reads what the running LearnHub service and idle
culler processes actually hold and who they are (``/proc/<pid>/environ``, ``/proc/<pid>/status``),
tries the Hub's files as the service's user, and checks the owners and modes of what the hub,
the service and the operator's commands wrote.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import stripe

from hub import proxy_launch
from hub.settings import load_settings
from tests.harness import ROOT, HubProcess, hub_settings, run_learnhub

#: `hub.service_user`'s default, created by scripts/setup.sh.
SERVICE_USER = "learnhub"
#: `hub.proxy_user`'s default, created by scripts/setup.sh.
PROXY_USER = "learnhub-proxy"

HUB_ONLY = {
    "LEARNHUB_ADMIN_TOKEN",
    "LEARNHUB_CLI_TOKEN",
    "LEARNHUB_COOKIE_SECRET",
    "LEARNHUB_SERVICE_TOKEN",
    "LEARNHUB_OAUTH_CLIENT_SECRET",
    "LEARNHUB_DEMO_PASSWORD",
}


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    workdir = tmp_path_factory.mktemp("privilege-hub")
    settings = hub_settings(workdir, courses_dir=ROOT / "courses", backend="local")
    settings["spawner"]["idle_timeout"] = 3600  # the idle culler runs too
    process = HubProcess(
        workdir=workdir,
        settings=settings,
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


def service_pid(hub: HubProcess, name: str = "learnhub") -> int:
    response = hub.api("GET", f"/services/{name}")
    assert response.status_code == 200, response.text
    pid = response.json()["pid"]
    assert pid, response.json()
    return int(pid)


def service_environment(hub: HubProcess) -> dict[str, str]:
    raw = Path(f"/proc/{service_pid(hub)}/environ").read_bytes()
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(): v.decode(errors="replace") for k, v in pairs}


def test_service_holds_none_of_the_hubs_secrets(hub: HubProcess) -> None:
    env = service_environment(hub)
    leaked = sorted(HUB_ONLY & env.keys())
    assert leaked == [], f"the LearnHub service was given {leaked}"
    values = set(env.values())
    for name in HUB_ONLY - {"LEARNHUB_ADMIN_TOKEN", "LEARNHUB_CLI_TOKEN", "LEARNHUB_SERVICE_TOKEN"}:
        assert hub.extra_env[name] not in values, name
    assert hub.admin_token not in values and hub.cli_token not in values
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


def process_ids(pid: int) -> dict[str, set[int]]:
    """Real, effective, saved and filesystem uids and gids, and the supplementary groups."""
    ids: dict[str, set[int]] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("Uid", "Gid", "Groups"):
            ids[key] = {int(v) for v in value.split()}
    return ids


def as_service_user(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run Python ``code`` as the service's user, exactly as JupyterHub starts the service."""
    account = pwd.getpwnam(SERVICE_USER)
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        user=account.pw_uid,
        group=account.pw_gid,
        extra_groups=[account.pw_gid],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_service_and_culler_run_as_the_unprivileged_user(hub: HubProcess) -> None:
    assert os.geteuid() == 0, "the test command runs as root, so the Hub does"
    account = pwd.getpwnam(SERVICE_USER)
    for name in ("learnhub", "idle-culler"):
        ids = process_ids(service_pid(hub, name))
        assert ids["Uid"] == {account.pw_uid}, (name, ids)
        assert ids["Gid"] == {account.pw_gid}, (name, ids)
        assert ids["Groups"] <= {account.pw_gid}, (name, ids)
    # The Hub itself stays root: it needs the Docker socket and writes firewall rules.
    assert hub.proc is not None
    assert process_ids(hub.proc.pid)["Uid"] == {0}


#: Tries every path given: "read" / "wrote" / "listed", or the error's name.
PROBE = """
import json, os, sys
out = {}
for spec in sys.argv[1:]:
    action, path = spec.split(":", 1)
    try:
        if action == "read":
            open(path, "rb").close()
        elif action == "write":
            open(path, "ab").close()
        elif action == "list":
            os.listdir(path)
        out[spec] = "ok"
    except OSError as exc:
        out[spec] = type(exc).__name__
print(json.dumps(out))
"""


def test_the_service_user_reaches_its_own_files_and_none_of_the_hubs(hub: HubProcess) -> None:
    data_dir = hub.data_dir
    hubs = [
        data_dir / name
        for name in ("jupyterhub.sqlite", "jupyterhub_cookie_secret", "jupyterhub.pid")
        if (data_dir / name).exists()
    ]
    assert data_dir / "jupyterhub.sqlite" in hubs
    # The Docker socket is root-equivalent: the Hub's alone.
    hubs += [p for p in (Path("/var/run/docker.sock"),) if p.exists()]
    refused = (
        [f"read:{p}" for p in hubs]
        + [f"write:{p}" for p in hubs]
        + [f"list:{data_dir}", f"write:{data_dir / 'planted'}"]
    )
    allowed = [
        f"write:{data_dir / 'service' / 'learnhub.sqlite'}",
        f"list:{data_dir / 'service' / 'exchange'}",
    ]
    result = as_service_user(PROBE, *refused, *allowed)
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert {spec: outcome[spec] for spec in refused} == dict.fromkeys(refused, "PermissionError")
    assert {spec: outcome[spec] for spec in allowed} == dict.fromkeys(allowed, "ok")


def test_data_folder_and_files_are_private(hub: HubProcess) -> None:
    data_dir = hub.data_dir
    account = pwd.getpwnam(SERVICE_USER)
    info = data_dir.stat()
    # Root's; the service's group may only pass through to its own folder.
    assert (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid) == (0o710, 0, account.pw_gid)
    service = data_dir / "service"
    info = service.stat()
    assert (stat.S_IMODE(info.st_mode), info.st_uid) == (0o700, account.pw_uid)
    written = [p for p in data_dir.rglob("*") if not p.is_symlink()]
    names = {p.name for p in written}
    assert {"jupyterhub.sqlite", "learnhub.sqlite", "exchange"} <= names
    loose = [
        f"{p} {oct(stat.S_IMODE(p.stat().st_mode))}" for p in written if p.stat().st_mode & 0o077
    ]
    assert loose == []
    misplaced = [
        f"{p} uid {p.stat().st_uid}"
        for p in written
        if (p.stat().st_uid == account.pw_uid) != (service in (p, *p.parents))
    ]
    assert misplaced == [], "the service owns its folder, root everything else"


def test_operator_commands_and_the_webhook_keep_the_services_files_its_own(
    hub: HubProcess,
) -> None:
    """End to end with the service unprivileged: the operator (root) grants a course, Stripe
    delivers an event, the pages answer; every file of the service's stays the service's."""
    account = pwd.getpwnam(SERVICE_USER)
    created = hub.api("POST", "/users/pat-privilege")
    assert created.status_code in (201, 409), created.text
    granted = run_learnhub(hub, "grant", "pat-privilege", "algorithms-in-python")
    assert granted.returncode == 0, granted.stderr
    group = hub.api("GET", "/groups/course-algorithms-in-python").json()
    assert "pat-privilege" in group["users"]

    secret = hub.extra_env["LEARNHUB_STRIPE_WEBHOOK_SECRETS"]
    payload = json.dumps(
        {
            "id": "evt_privilege_" + secrets.token_hex(6),
            "object": "event",
            "type": "balance.available",
            "created": int(time.time()),
            "data": {"object": {"id": "txn_1", "object": "balance"}},
        }
    )
    header = stripe.WebhookSignature.generate_signature_header(payload, secret)
    answer = httpx.post(
        hub.url + "services/learnhub/stripe/webhook",
        content=payload.encode(),
        headers={"Stripe-Signature": header, "Content-Type": "application/json"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"status": "ignored"}
    catalog = httpx.get(hub.url + "services/learnhub/", timeout=30)
    assert catalog.status_code == 200

    service = hub.data_dir / "service"
    foreign = [
        f"{p} uid {p.lstat().st_uid}"
        for p in [service, *service.rglob("*")]
        if p.lstat().st_uid != account.pw_uid
    ]
    assert foreign == [], "a root command left files the service cannot use"


def proxy_pid(hub: HubProcess) -> int:
    pid = int((hub.data_dir / "proxy.pid").read_text().strip())
    assert "configurable-http-proxy" in Path(f"/proc/{pid}/cmdline").read_text()
    return pid


def test_the_proxy_runs_as_its_own_user_with_only_its_token(hub: HubProcess) -> None:
    """configurable-http-proxy faces the internet and needs no root, and none of the Hub's
    secrets: it runs as ``hub.proxy_user`` (not the service's user, which could otherwise read
    its API token and reroute ``/hub/``), and is given its own token and the locale only."""
    proxy = pwd.getpwnam(PROXY_USER)
    service = pwd.getpwnam(SERVICE_USER)
    assert proxy.pw_uid != service.pw_uid
    pid = proxy_pid(hub)
    ids = process_ids(pid)
    assert ids["Uid"] == {proxy.pw_uid}, ids
    assert ids["Gid"] == {proxy.pw_gid}, ids
    assert ids["Groups"] <= {proxy.pw_gid}, ids
    status = dict(
        line.split(":\t", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    assert status["NoNewPrivs"].strip() == "1"
    assert int(status["CapBnd"], 16) == 0, "no capability left to regain (port above 1024)"

    raw = Path(f"/proc/{pid}/environ").read_bytes()
    env = dict(item.decode().split("=", 1) for item in raw.split(b"\0") if b"=" in item)
    assert set(env) <= set(proxy_launch.KEPT), sorted(set(env) - set(proxy_launch.KEPT))
    assert env["CONFIGPROXY_AUTH_TOKEN"]
    values = set(env.values())
    assert hub.admin_token not in values and hub.cli_token not in values
    assert not values & {hub.extra_env[name] for name in HUB_ONLY if name in hub.extra_env}

    # The service's user cannot read the proxy's token; the proxy still routes the Hub and
    # the service.
    result = as_service_user(PROBE, f"read:/proc/{pid}/environ")
    assert json.loads(result.stdout) == {f"read:/proc/{pid}/environ": "PermissionError"}
    assert httpx.get(hub.url + "hub/login", timeout=30).status_code == 200
    assert httpx.get(hub.url + "services/learnhub/", timeout=30).status_code == 200


def test_the_proxy_keeps_only_the_port_capability_it_needs() -> None:
    assert proxy_launch.binds_privileged_port(["--ip", "0.0.0.0", "--port", "443"])
    assert not proxy_launch.binds_privileged_port(["--ip", "0.0.0.0", "--port", "8000"])
    assert not proxy_launch.binds_privileged_port(["--socket", "/run/learnhub.sock"])
    env = {"PATH": str(ROOT / "tools" / "node_modules" / ".bin"), "CONFIGPROXY_AUTH_TOKEN": "t"}
    low = proxy_launch.command(PROXY_USER, ["--port", "443"], env)
    assert "--ambient-caps=+net_bind_service" in low
    assert "--bounding-set=-all,+net_bind_service" in low
    high = proxy_launch.command(PROXY_USER, ["--port", "8000"], env)
    assert "--bounding-set=-all" in high
    assert not [arg for arg in high if "net_bind_service" in arg]
    assert proxy_launch.proxy_environment(
        {"CONFIGPROXY_AUTH_TOKEN": "t", "LEARNHUB_ADMIN_TOKEN": "a", "LANG": "C.UTF-8"}
    ) == {"CONFIGPROXY_AUTH_TOKEN": "t", "LANG": "C.UTF-8"}


def test_a_proxy_that_cannot_start_says_why(tmp_path: Path) -> None:
    env = {"PATH": str(tmp_path)}  # no configurable-http-proxy there
    with pytest.raises(proxy_launch.LaunchError, match=r"scripts/setup\.sh"):
        proxy_launch.command(PROXY_USER, [], env)
    with pytest.raises(proxy_launch.LaunchError, match="usage"):
        proxy_launch.parse(["--port", "8000"])
    result = subprocess.run(
        [sys.executable, "-m", "hub.proxy_launch", "--user", "nobody-here-xyz", "--"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env={"PATH": os.environ["PATH"]},
    )
    assert result.returncode == 2
    assert "no user 'nobody-here-xyz'" in result.stderr or "not found" in result.stderr


def test_the_proxy_may_not_share_the_services_user(tmp_path: Path) -> None:
    path = tmp_path / "learnhub.yaml"
    path.write_text("hub:\n  service_user: learnhub\n  proxy_user: learnhub\n")
    with pytest.raises(Exception, match="proxy_user must not be service_user"):
        load_settings(path, {})
