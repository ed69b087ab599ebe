"""Test harness: a real JupyterHub + proxy on free ports, and a browser-like client.

The hub runs as a subprocess from the repository's own `jupyterhub_config.py`, configured only
through a settings file and LEARNHUB_* variables, exactly as an operator would. Its base URL
contains `@` and an escaped space so that escaping bugs show up.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
#: Every container and volume a test session creates starts with this; cleanup goes by it. The
#: process id keeps two sessions on one Docker engine (a developer's and CI's) out of each other's
#: way; leftovers of sessions that died are removed by :func:`remove_stale_test_objects`.
TEST_PREFIX = f"lht{os.getpid():07d}"
STALE_PATTERN = re.compile(r"^/?lht(\d{7})")
_hub_counter = iter(range(1, 10_000))
#: A base URL chosen to break escaping bugs (as JupyterHub's own tests do).
HOSTILE_BASE_URL = "/@/space%20word/"


def free_port() -> int:
    """A TCP port that is free right now on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _docker(*args: str) -> list[str]:
    """Run the docker CLI; its output split into words (nothing when it fails)."""
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=False
    ).stdout.split()


def docker_cleanup(prefix: str = TEST_PREFIX) -> None:
    """Remove every container and volume whose name starts with `prefix`."""
    containers = _docker("ps", "-aq", "--filter", f"name=^/{prefix}")
    if containers:
        _docker("rm", "-f", *containers)
    volumes = [v for v in _docker("volume", "ls", "-q") if v.startswith(prefix)]
    if volumes:
        _docker("volume", "rm", "-f", *volumes)
    networks = _docker("network", "ls", "--format", "{{.Name}}", "--filter", f"name=^{prefix}")
    bases = [n for n in networks if n.startswith(prefix) and not n.endswith("-internet")]
    if bases:
        from hub.network import remove_networks

        remove_networks(bases)


def remove_stale_test_objects() -> None:
    """Remove containers and volumes left by test sessions whose process is gone."""
    names = (
        _docker("ps", "-a", "--format", "{{.Names}}")
        + _docker("volume", "ls", "-q")
        + _docker("network", "ls", "--format", "{{.Name}}")
    )
    dead = set()
    for name in names:
        match = STALE_PATTERN.match(name)
        if match and not Path(f"/proc/{int(match.group(1))}").exists():
            dead.add(f"lht{match.group(1)}")
    for prefix in sorted(dead):
        docker_cleanup(prefix)


def container_logs(prefix: str = TEST_PREFIX) -> str:
    """Logs of every test container, for failure reports."""
    chunks = []
    for name in _docker("ps", "-a", "--format", "{{.Names}}", "--filter", f"name=^/{prefix}"):
        logs = subprocess.run(
            ["docker", "logs", "--tail", "80", name], capture_output=True, text=True, check=False
        )
        chunks.append(f"----- container {name} -----\n{logs.stdout}{logs.stderr}")
    return "\n".join(chunks)


@dataclass
class HubProcess:
    """A running (or stoppable, restartable) JupyterHub with LearnHub's config."""

    workdir: Path
    settings: dict[str, Any]
    admin_token: str = field(default_factory=lambda: secrets.token_hex(32))
    extra_env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def bind_url(self) -> str:
        return str(self.settings["hub"]["bind_url"])

    @property
    def url(self) -> str:
        """Public base URL, ending in `/`."""
        return self.bind_url

    @property
    def api_url(self) -> str:
        return self.url + "hub/api"

    @property
    def prefix(self) -> str:
        """Prefix of this hub's containers and volumes."""
        return str(self.settings["spawner"]["name_prefix"])

    @property
    def log_path(self) -> Path:
        return self.workdir / "hub.log"

    @property
    def config_path(self) -> Path:
        return self.workdir / "learnhub.yaml"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LEARNHUB_")}
        env["LEARNHUB_CONFIG"] = str(self.config_path)
        env["LEARNHUB_ADMIN_TOKEN"] = self.admin_token
        bins = [str(ROOT / "tools" / "node_modules" / ".bin"), str(Path(sys.executable).parent)]
        env["PATH"] = os.pathsep.join([*bins, env.get("PATH", "")])
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 180) -> None:
        """Start the hub and wait until its API answers.

        With Docker, the hub's own course network and firewall rules are made first, as an
        operator's `learnhub network apply` would.
        """
        self.config_path.write_text(yaml.safe_dump(self.settings))
        if self.settings["spawner"].get("backend", "docker") == "docker":
            applied = run_learnhub(self, "network", "apply", timeout=120)
            if applied.returncode != 0:
                raise RuntimeError(f"learnhub network apply failed:\n{applied.stderr}")
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "jupyterhub"),
                "-f",
                str(ROOT / "jupyterhub_config.py"),
            ],
            cwd=self.workdir,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"hub exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(self.api_url + "/", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"hub did not answer within {timeout}s:\n{self.log_tail()}")

    def stop(self, *, kill_proxy: bool = True) -> None:
        """Stop the hub (servers keep running: cleanup_servers is off)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None
        if kill_proxy:
            pid_file = Path(self.settings["hub"]["data_dir"]) / "proxy.pid"
            if pid_file.exists():
                try:
                    os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
                except (ProcessLookupError, ValueError):
                    pass

    def log_tail(self, lines: int = 120) -> str:
        if not self.log_path.exists():
            return "(no hub log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Call the Hub REST API as the learnhub-admin service."""
        headers = {"Authorization": f"token {self.admin_token}"}
        return httpx.request(method, self.api_url + path, headers=headers, timeout=60, **kwargs)


def run_learnhub(
    hub: HubProcess, *args: str, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run the `learnhub` CLI as the operator of `hub` would (same settings, admin token)."""
    result = subprocess.run(
        [sys.executable, "-m", "hub.cli", *args],
        env=hub.env(),
        capture_output=True,
        text=True,
        check=False,
        cwd=os.fspath(hub.workdir),
        timeout=timeout,
    )
    print(result.stdout, result.stderr)
    return result


def run_nbgrader(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the real nbgrader CLI in ``cwd``; fail the test with its output on error.

    nbgrader's gradebook shells out to `alembic`, so the venv's bin folder goes on PATH.
    """
    import pytest

    venv_bin = str(Path(sys.executable).parent)
    try:
        return subprocess.run(
            [sys.executable, "-m", "nbgrader", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=600,
            check=True,
            env={**os.environ, "PATH": venv_bin + os.pathsep + os.environ.get("PATH", "")},
        )
    except subprocess.CalledProcessError as exc:
        pytest.fail(f"nbgrader {' '.join(args)} failed:\n{exc.stdout}\n{exc.stderr}")


def hub_settings(workdir: Path, *, courses_dir: Path, backend: str = "docker") -> dict[str, Any]:
    """Settings for a test hub: free ports, hostile base URL, test prefix."""
    port = free_port()
    prefix = f"{TEST_PREFIX}h{next(_hub_counter)}"
    return {
        "mode": "demo",
        "courses_dir": str(courses_dir),
        "hub": {
            "bind_url": f"http://127.0.0.1:{port}{HOSTILE_BASE_URL}",
            "hub_port": free_port(),
            "proxy_api_port": free_port(),
            "service_port": free_port(),
            "data_dir": str(workdir / "var"),
            "log_level": "DEBUG",
        },
        "spawner": {
            "backend": backend,
            # One prefix per hub: two hubs of one session never fight over a container name.
            "name_prefix": prefix,
            # Its own isolated network too, firewalled for this hub's ports.
            "network": f"{prefix}-net",
            "idle_timeout": 0,
            "start_timeout": 90,
        },
    }


class Browser:
    """A cookie-keeping HTTP client that signs up and logs in like a person with a browser."""

    def __init__(self, hub: HubProcess) -> None:
        self.hub = hub
        self.client = httpx.Client(base_url=hub.url, follow_redirects=True, timeout=60)

    def close(self) -> None:
        self.client.close()

    def _xsrf(self, page: str) -> str:
        response = self.client.get(page)
        response.raise_for_status()
        match = re.search(r'name="_xsrf" value="([^"]+)"', response.text)
        assert match, f"no _xsrf field on {page}"
        return match.group(1)

    def signup(self, username: str, password: str) -> httpx.Response:
        xsrf = self._xsrf("hub/signup")
        return self.client.post(
            "hub/signup",
            data={
                "_xsrf": xsrf,
                "username": username,
                "email": f"{username}@example.org",
                "signup_password": password,
                "signup_password_confirmation": password,
            },
        )

    def login(self, username: str, password: str) -> httpx.Response:
        xsrf = self._xsrf("hub/login")
        return self.client.post(
            "hub/login",
            data={
                "_xsrf": xsrf,
                "username": username,
                "password": password,
            },
        )

    def xsrf_headers(self, path: str = "") -> dict[str, str]:
        """The header Jupyter's XSRF check wants for a cookie-authenticated call to `path`.

        The hub and each server set their own `_xsrf` cookie; the most specific path wins, as in
        a browser.
        """
        best, best_len = "", -1
        for cookie in self.client.cookies.jar:
            if cookie.name != "_xsrf":
                continue
            cookie_path = urllib.parse.unquote(cookie.path or "/")
            if urllib.parse.unquote(path).startswith(cookie_path) and len(cookie_path) > best_len:
                best, best_len = cookie.value or "", len(cookie_path)
        return {"X-XSRFToken": best}

    def hub_path(self) -> str:
        """The path of the hub's pages, e.g. `/@/space%20word/hub/`."""
        return urllib.parse.urlparse(self.hub.url).path + "hub/"

    def absolute(self, path: str) -> str:
        """`/x/y` (as the Hub API returns server URLs) -> `http://host:port/x/y`."""
        origin = self.hub.url.split("/", 3)
        return f"{origin[0]}//{origin[2]}{path}"

    def open_server(self, server_url: str) -> httpx.Response:
        """Open JupyterLab like a browser does, completing the OAuth hand-shake with the hub."""
        response = self.client.get(self.absolute(server_url) + "lab")
        response.raise_for_status()
        return response

    def contents(self, server_url: str, path: str = "") -> httpx.Response:
        """GET the Jupyter contents API of a server (after :meth:`open_server`)."""
        return self.client.get(
            self.absolute(server_url) + "api/contents/" + quote(path),
            headers=self.xsrf_headers(server_url),
        )

    def put_file(self, server_url: str, path: str, text: str) -> httpx.Response:
        """Save a text file through the contents API, as JupyterLab does."""
        return self.client.put(
            self.absolute(server_url) + "api/contents/" + quote(path),
            json={"type": "file", "format": "text", "content": text},
            headers=self.xsrf_headers(server_url),
        )

    def spawn_course(self, username: str, course_id: str) -> httpx.Response:
        """Ask the hub to start a course server through the REST API with the user's session."""
        return self.client.post(
            f"hub/api/users/{quote(username, safe='')}/servers/{quote(course_id, safe='')}",
            headers=self.xsrf_headers(self.hub_path()),
        )


@contextmanager
def browser(hub: HubProcess) -> Iterator[Browser]:
    """A fresh browser session."""
    b = Browser(hub)
    try:
        yield b
    finally:
        b.close()


def wait_for_server(
    hub: HubProcess, username: str, server: str, timeout: float = 90
) -> dict[str, Any]:
    """Wait until the named server is ready; return its model."""
    deadline = time.monotonic() + timeout
    model: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = hub.api("GET", f"/users/{quote(username, safe='')}")
        response.raise_for_status()
        model = response.json()["servers"].get(server, {})
        if model.get("ready"):
            return model
        if model and not model.get("pending") and not model.get("ready"):
            break
        time.sleep(0.3)
    raise AssertionError(f"server {username}/{server} not ready: {model}\n{hub.log_tail()}")


def have(binary: str) -> bool:
    """Whether `binary` is on PATH."""
    return shutil.which(binary) is not None
