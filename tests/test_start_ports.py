"""Starting and stopping LearnHub from its commands: a clear refusal when one of its ports is
another program's, nothing left running after a refusal or a Ctrl-C.

A newcomer with something on :8000 ran `learnhub demo`: configurable-http-proxy logged
``EADDRINUSE`` and kept running, the Hub "started", and nothing was reachable.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest

from harness.hub import venv_path
from hub.cli import refuse_taken_ports
from hub.errors import LearnHubError
from hub.settings import load_settings
from tests.harness import ROOT, HubProcess, hub_settings, run_learnhub, wait_until


@pytest.fixture
def taken() -> Iterator[int]:
    """A loopback port another program listens on."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield int(other.getsockname()[1])


def can_connect(port: int) -> bool:
    """Whether anything listens on 127.0.0.1:``port``."""
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def local_hub(workdir: Path) -> HubProcess:
    """Settings of a hub without Docker (its ports free), written as an operator would."""
    hub = HubProcess(
        workdir=workdir,
        settings=hub_settings(workdir, courses_dir=ROOT / "courses", backend="local"),
    )
    return hub


def test_demo_refuses_a_taken_public_port(tmp_path: Path, taken: int) -> None:
    """The newcomer's case, through the real command: `learnhub demo` with :8000 taken."""
    hub = local_hub(tmp_path)
    hub.settings["hub"]["bind_url"] = f"http://127.0.0.1:{taken}/"
    hub.prepare()
    result = run_learnhub(hub, "demo", "--skip-images", timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith(f"learnhub: 127.0.0.1:{taken} (where people connect")
    assert "set hub.bind_url in learnhub.yaml" in result.stderr
    assert len(result.stderr.splitlines()) == 1  # one line, no traceback
    # Nothing started: no proxy (its pid file, its API), no Hub, no service.
    assert not (hub.data_dir / "proxy.pid").exists()
    for name in ("proxy_api_port", "hub_port", "service_port"):
        assert not can_connect(hub.settings["hub"][name]), name


@pytest.mark.parametrize("setting", ["proxy_api_port", "service_port", "hub_port"])
def test_every_port_is_checked(tmp_path: Path, taken: int, setting: str) -> None:
    """The same refusal, in process, for the other ports a start opens."""
    hub = local_hub(tmp_path)
    hub.settings["hub"][setting] = taken
    hub.prepare()
    settings = load_settings(hub.config_path, {})
    with pytest.raises(LearnHubError, match=rf"127\.0\.0\.1:{taken} .*set hub\.{setting} in"):
        refuse_taken_ports(settings)


def test_every_port_free_passes(tmp_path: Path) -> None:
    hub = local_hub(tmp_path)
    hub.prepare()
    refuse_taken_ports(load_settings(hub.config_path, {}))


def test_proxy_refuses_a_port_taken_after_the_check(taken: int) -> None:
    """A port taken between the CLI's check and the proxy's start: configurable-http-proxy
    would log EADDRINUSE and run on; hub.proxy_launch exits instead, which fails JupyterHub's
    start ("Proxy failed to start with exit code 2")."""
    with socket.socket() as spare:
        spare.bind(("127.0.0.1", 0))
        api_port = int(spare.getsockname()[1])
    result = subprocess.run(
        [
            *(sys.executable, "-m", "hub.proxy_launch", "--user", "", "--"),
            *("--ip", "127.0.0.1", "--port", str(taken)),
            *("--api-ip", "127.0.0.1", "--api-port", str(api_port)),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
        env={"PATH": venv_path(dict(os.environ), str(ROOT / "tools" / "node_modules" / ".bin"))},
    )
    assert result.returncode == 2
    assert f"127.0.0.1:{taken} is already in use by another program" in result.stderr
    assert "set hub.bind_url in learnhub.yaml" in result.stderr
    assert not can_connect(api_port)


def test_ctrl_c_stops_the_demo_and_its_proxy(tmp_path: Path) -> None:
    """Ctrl-C on `learnhub demo` ends the command and frees its ports: the proxy used to stay,
    answering 503 on the demo's address (JupyterHub's `cleanup_proxy` is off)."""
    hub = local_hub(tmp_path)
    hub.prepare()
    log = hub.log_path.open("ab")
    demo = subprocess.Popen(
        [sys.executable, "-m", "hub.cli", "demo", "--skip-images"],
        cwd=tmp_path,
        env=hub.env(),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    proxy = None
    try:

        def answers() -> bool:
            assert demo.poll() is None, hub.log_tail()
            try:
                return httpx.get(hub.api_url + "/", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(answers, "the demo's Hub API", timeout=180, interval=0.2)
        proxy = hub.proxy_pid()
        assert proxy is not None
        demo.send_signal(signal.SIGINT)  # the CLI became JupyterHub: same process
        assert demo.wait(timeout=120) == 0, hub.log_tail()
        wait_until(lambda: not Path(f"/proc/{proxy}").exists(), "the proxy to exit")
        ports = [int(urlparse(hub.bind_url).port or 0)]
        ports += [
            hub.settings["hub"][name] for name in ("proxy_api_port", "hub_port", "service_port")
        ]
        listening = [port for port in ports if can_connect(port)]
        assert not listening, hub.log_tail()
    finally:
        log.close()
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
        hub.stop()  # whatever is left (the proxy, services) on failure
