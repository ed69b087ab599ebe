"""The systemd units of deploy/systemd, checked by systemd itself (`systemd-analyze verify`).

The units name the checkout as /opt/learnhub (docs/how-to/production.md); here they are
checked with this checkout in its place, so `verify` also proves every command they run exists.
Debian's nginx.service is checked with LearnHub's drop-in applied. Last, what `learnhub serve`
(the unit's command) hands the Hub.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from hub.cli import build_parser, cmd_network_apply, hub_environment
from hub.settings import load_settings
from tests.harness import ROOT

UNITS = ROOT / "deploy" / "systemd"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"
DEBIAN_NGINX_UNIT = Path("/lib/systemd/system/nginx.service")


def verify(unit: Path, unit_path: Path) -> subprocess.CompletedProcess[str]:
    """Run `systemd-analyze verify` on ``unit`` with ``unit_path`` searched first."""
    return subprocess.run(
        [SYSTEMD_ANALYZE, "verify", str(unit)],
        env={"SYSTEMD_UNIT_PATH": f"{unit_path}:", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def installed(tmp_path: Path) -> Path:
    """deploy/systemd copied to ``tmp_path`` with this checkout in /opt/learnhub's place."""
    target = tmp_path / "units"
    shutil.copytree(UNITS, target)
    for path in target.rglob("*"):
        if path.is_file():
            path.write_text(path.read_text().replace("/opt/learnhub", str(ROOT)))
    return target


def test_hub_unit_verifies_and_restarts_on_failure(tmp_path: Path) -> None:
    units = installed(tmp_path)
    unit = units / "learnhub-hub.service"
    result = verify(unit, units)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    text = unit.read_text()
    assert "Restart=on-failure" in text
    assert f"ExecStart={ROOT}/.venv/bin/learnhub serve" in text


def test_swarm_node_unit_verifies_and_reapplies_the_firewall_after_docker(
    tmp_path: Path,
) -> None:
    # iptables rules are gone after a reboot: the node's unit writes them again, once Docker
    # (which makes DOCKER-USER and holds the config-only networks) is up.
    units = installed(tmp_path)
    unit = units / "learnhub-swarm-node.service"
    result = verify(unit, units)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    text = unit.read_text()
    for line in (
        "Type=oneshot",
        "RemainAfterExit=yes",
        "After=docker.service",
        "Requires=docker.service",
        "WantedBy=docker.service",
    ):
        assert f"\n{line}\n" in text, line
    assert "ExecStop" not in text.replace("No ExecStop=", "")  # never takes the rules away
    (command,) = [line for line in text.splitlines() if line.startswith("ExecStart=")]
    program, *args = command.removeprefix("ExecStart=").split()
    assert program == f"{ROOT}/.venv/bin/learnhub"
    # The very command the unit runs is one the CLI has (a renamed flag fails here).
    parsed = build_parser().parse_args(args)
    assert parsed.func is cmd_network_apply and parsed.swarm_node is True


def test_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    # The check above can fail: a unit whose command is missing, or a bad value, is reported.
    units = installed(tmp_path)
    unit = units / "learnhub-hub.service"
    unit.write_text(
        unit.read_text()
        .replace("learnhub serve", "learnhub-missing serve")
        .replace("Restart=on-failure", "Restart=sometimes")
    )
    result = verify(unit, units)
    assert result.returncode != 0
    assert "learnhub-missing is not executable" in result.stderr
    assert "sometimes" in result.stderr


def test_debian_nginx_unit_with_our_drop_in_verifies(tmp_path: Path) -> None:
    if not DEBIAN_NGINX_UNIT.exists():
        pytest.fail(f"{DEBIAN_NGINX_UNIT} not found: scripts/setup.sh --test installs nginx")
    units = installed(tmp_path)
    shutil.copy(DEBIAN_NGINX_UNIT, units / "nginx.service")
    result = verify(units / "nginx.service", units)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    drop_in = units / "nginx.service.d" / "learnhub.conf"
    assert "Restart=on-failure" in drop_in.read_text()
    # verify did read the drop-in: spoil it and it names the file.
    drop_in.write_text(drop_in.read_text().replace("on-failure", "sometimes"))
    spoiled = verify(units / "nginx.service", units)
    assert f"{drop_in}:" in spoiled.stderr and "sometimes" in spoiled.stderr


def test_the_hub_reads_the_settings_file_serve_was_given(tmp_path: Path) -> None:
    # `learnhub --config FILE serve` validated FILE, then started the Hub from the checkout,
    # where jupyterhub_config.py read ./learnhub.yaml or the defaults instead.
    config = tmp_path / "learnhub.yaml"
    config.write_text(f"hub:\n  data_dir: {tmp_path}/var\n")
    settings = load_settings(config, {})
    env = hub_environment(settings, {"PATH": "/usr/bin"})
    assert env["LEARNHUB_CONFIG"] == str(config.resolve())
