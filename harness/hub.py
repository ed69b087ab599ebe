"""A real JupyterHub + configurable-http-proxy as a subprocess on free ports.

:class:`JupyterHubProcess` starts any hub config file and waits for its API; :class:`HubProcess`
runs the repository's own `jupyterhub_config.py`, configured only through a settings file and
LEARNHUB_* variables, exactly as an operator would. Its base URL contains `@` and an escaped space
so that escaping bugs show up.
"""

from __future__ import annotations

import os
import secrets
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import yaml

from harness.docker import TEST_PREFIX, docker_cleanup
from harness.names import resolve_localhost_subdomains
from harness.system import free_port

ROOT = Path(__file__).resolve().parent.parent
_hub_counter = iter(range(1, 10_000))
#: A base URL chosen to break escaping bugs (as JupyterHub's own tests do).
HOSTILE_BASE_URL = "/@/space%20word/"


def venv_path(env: dict[str, str], *first: str) -> str:
    """``PATH`` with ``first`` and this venv's bin folder ahead of what ``env`` has."""
    return os.pathsep.join([*first, str(Path(sys.executable).parent), env.get("PATH", "")])


class JupyterHubProcess:
    """A JupyterHub subprocess from one config file: start, wait for its API, call it, stop.

    Subclasses (dataclasses) hold ``workdir``, ``admin_token`` and ``proc`` and say which config
    file runs, with what environment, at which URL.
    """

    workdir: Path
    admin_token: str
    proc: subprocess.Popen[bytes] | None
    #: What error messages call this hub.
    label = "hub"
    #: How many log lines :meth:`log_tail` gives by default.
    tail_lines = 120

    @property
    def config_file(self) -> Path:
        """The `jupyterhub_config.py` this hub runs."""
        raise NotImplementedError

    @property
    def url(self) -> str:
        """Public base URL, ending in `/`."""
        raise NotImplementedError

    @property
    def data_dir(self) -> Path:
        """Where the hub keeps its state (the proxy's pid file among it)."""
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        """The environment the hub process gets."""
        raise NotImplementedError

    def prepare(self) -> None:
        """Write what the hub reads at start (called by :meth:`start`)."""

    @property
    def api_url(self) -> str:
        return self.url + "hub/api"

    @property
    def log_path(self) -> Path:
        return self.workdir / "hub.log"

    def start(self, timeout: float = 180) -> None:
        """Start the hub and wait until its API answers."""
        # User servers may live on `<user>.localhost`: resolve those as a browser would.
        resolve_localhost_subdomains()
        self.prepare()
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "jupyterhub"), "-f", str(self.config_file)],
            cwd=self.workdir,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                error = f"{self.label} exited with {self.proc.returncode}:\n{self.log_tail()}"
                self._remove_leftovers()
                raise RuntimeError(error)
            try:
                if httpx.get(self.api_url + "/", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        error = f"{self.label} did not answer within {timeout}s:\n{self.log_tail()}"
        self._remove_leftovers()
        raise RuntimeError(error)

    def _remove_leftovers(self) -> None:
        """Stop what a hub that failed to start left running: its proxy and managed services.

        A hub that gives up on a slow service ("Cannot connect to learnhub service") exits
        without stopping it; services run in sessions of their own, so nothing else would, and
        an orphaned service polls a hub that is gone for the rest of the run. They are found by
        their working folder, which is this hub's own.
        """
        self.stop()
        for pid in self._service_pids():
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def proxy_pid(self) -> int | None:
        """The proxy's process id, from its pid file."""
        try:
            return int((self.data_dir / "proxy.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def _service_pids(self, proxy: int | None = None) -> list[int]:
        """Processes working in this hub's folder other than the hub and its proxy: its managed
        services, and what a hub that is gone left of them.

        They run in sessions of their own (a process-group signal misses them) and as another
        user; their working folder is the hub's, which no other hub shares. The proxy is left
        out: a running hub that sees its proxy die starts a new one.
        """
        workdir = str(self.workdir.resolve())
        skip = {os.getpid(), proxy, self.proxy_pid(), self.proc.pid if self.proc else None}
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) in skip:
                continue
            try:
                if os.readlink(entry / "cwd") == workdir:
                    pids.append(int(entry.name))
            except OSError:  # gone meanwhile, or not ours to read
                continue
        return pids

    def _kill_services(self, proxy: int | None) -> None:
        for pid in self._service_pids(proxy):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def stop(self, *, kill_proxy: bool = True, discard: bool = False) -> None:
        """Stop the hub, and unless told otherwise its proxy.

        ``discard`` is for a hub that is thrown away, never one a test restarts or inspects
        afterwards: its managed services are killed outright instead of being asked to stop one
        after another, which took 2-5 s per hub (the service winding down its queues, then the
        grading worker).
        """
        # Read first: a hub that cleans up its proxy removes the pid file as it stops.
        proxy = self.proxy_pid()
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            if discard:
                self._kill_services(proxy)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            if discard:  # one the hub restarted in between (it polls its services)
                self._kill_services(proxy)
        self.proc = None
        if kill_proxy and proxy:
            try:
                os.kill(proxy, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def log_tail(self, lines: int | None = None) -> str:
        """The last lines of the hub's log."""
        if not self.log_path.exists():
            return f"(no {self.label} log)"
        text = self.log_path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-(lines or self.tail_lines) :])

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Call the Hub REST API with the admin token."""
        headers = {"Authorization": f"token {self.admin_token}"}
        return httpx.request(method, self.api_url + path, headers=headers, timeout=60, **kwargs)


class LoopbackHubProcess(JupyterHubProcess):
    """A hub of its own config file, at `http://127.0.0.1:<port>/`, with its state in
    `<workdir>/var` (the stock hub of the benchmarks, the tests' stub hubs)."""

    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def data_dir(self) -> Path:
        return self.workdir / "var"

    def prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)


@dataclass
class HubProcess(JupyterHubProcess):
    """A running (or stoppable, restartable) JupyterHub with LearnHub's config.

    Stopping it leaves course servers running (`cleanup_servers` is off).
    """

    workdir: Path
    settings: dict[str, Any]
    admin_token: str = field(default_factory=lambda: secrets.token_hex(32))
    #: The `learnhub` CLI's token (role `learnhub-cli`): what :func:`run_learnhub` runs with.
    #: ``admin_token`` is the tests' own full-admin credential (:meth:`api`), never the CLI's.
    cli_token: str = field(default_factory=lambda: secrets.token_hex(32))
    extra_env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def config_file(self) -> Path:
        return ROOT / "jupyterhub_config.py"

    @property
    def bind_url(self) -> str:
        return str(self.settings["hub"]["bind_url"])

    @property
    def url(self) -> str:
        """The public URL (`http://localhost:<port>/<base>/` with subdomains), else where the
        proxy listens."""
        return str(self.settings["hub"].get("public_url") or self.bind_url)

    @property
    def data_dir(self) -> Path:
        return Path(self.settings["hub"]["data_dir"])

    @property
    def learnhub_db_path(self) -> Path:
        """LearnHub's SQLite database: the service's folder of the data folder."""
        return self.data_dir / "service" / "learnhub.sqlite"

    @property
    def prefix(self) -> str:
        """Prefix of this hub's containers and volumes."""
        return str(self.settings["spawner"]["name_prefix"])

    @property
    def config_path(self) -> Path:
        """The settings file (`learnhub.yaml`) this hub reads."""
        return self.workdir / "learnhub.yaml"

    def prepare(self) -> None:
        """Write the settings; with Docker, make the hub's own course network and firewall
        rules first, as an operator's `learnhub network apply` would."""
        self.config_path.write_text(yaml.safe_dump(self.settings))
        # A root hub runs the LearnHub service as `hub.service_user`: it must reach its work
        # folder (its cwd, the settings file) and the courses, as in an operator's install.
        let_service_user_through(self.workdir, Path(self.settings["courses_dir"]))
        if self.settings["spawner"].get("backend", "docker") == "docker":
            apply_network(self)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LEARNHUB_")}
        env["LEARNHUB_CONFIG"] = str(self.config_path)
        env["LEARNHUB_ADMIN_TOKEN"] = self.admin_token
        env["LEARNHUB_CLI_TOKEN"] = self.cli_token
        env["PATH"] = venv_path(env, str(ROOT / "tools" / "node_modules" / ".bin"))
        # The venv's editable install maps `hub` and `grader` to the checkout that made it:
        # the Hub, its services and the grading worker (JupyterHub keeps PYTHONPATH for them)
        # run this checkout's code, a git worktree's too.
        env["PYTHONPATH"] = str(ROOT)
        env.update(self.extra_env)
        return env


def let_service_user_through(*folders: Path) -> None:
    """Let other users read ``folders`` and pass through their parents up to the temporary
    folder: pytest's (``/tmp/pytest-of-root/...``) and ``mkdtemp``'s are 0700. Only folders
    under the temporary folder are changed, and only by a root test run (a hub that is not
    root runs its service as itself)."""
    if os.geteuid() != 0:
        return
    tmp = Path(tempfile.gettempdir()).resolve()
    for folder in (f.resolve() for f in folders):
        if tmp not in folder.parents:
            continue
        folder.chmod(stat.S_IMODE(folder.stat().st_mode) | 0o005)
        for parent in folder.parents:
            if parent == tmp:
                break
            parent.chmod(stat.S_IMODE(parent.stat().st_mode) | 0o001)


@contextmanager
def running(hub: HubProcess) -> Iterator[HubProcess]:
    """Start ``hub``; afterwards stop it and remove its containers, volumes and network."""
    hub.start()
    try:
        yield hub
    finally:
        hub.stop(discard=True)
        docker_cleanup(hub.prefix)


def hub_settings(workdir: Path, *, courses_dir: Path, backend: str = "docker") -> dict[str, Any]:
    """Settings for a test hub: free ports, hostile base URL, test prefix.

    Docker hubs run as LearnHub does by default: every user server on its own origin,
    `<user>.localhost:<port>`, the Hub and the service on `localhost:<port>`. The `local`
    backend (processes on this machine) has no subdomains.
    """
    port = free_port()
    prefix = f"{TEST_PREFIX}h{next(_hub_counter)}"
    # Docker hubs keep LearnHub's default `subdomain_host: auto`, which derives
    # `http://localhost:<port>` from this public URL: the tests run what operators get.
    origins: dict[str, str] = {"subdomain_host": ""}
    if backend == "docker":
        origins = {"public_url": f"http://localhost:{port}{HOSTILE_BASE_URL}"}
    return {
        "mode": "demo",
        "courses_dir": str(courses_dir),
        "hub": {
            **origins,
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


#: Whether this process has run `learnhub network apply` through the CLI yet (see
#: :func:`apply_network`).
_network_cli_ran = False


def apply_network(hub: HubProcess) -> None:
    """Make `hub`'s course networks and firewall rules, as `learnhub network apply` does.

    The first docker hub of a test process runs the real command, so that the command itself
    stays tested; later ones call the function it runs in this process, which saves a Python
    start and the CLI's imports (1-1.5 s) per hub. Both read the same settings file.
    """
    global _network_cli_ran
    if not _network_cli_ran:
        applied = run_learnhub(hub, "network", "apply", timeout=120)
        if applied.returncode != 0:
            raise RuntimeError(f"learnhub network apply failed:\n{applied.stderr}")
        _network_cli_ran = True
        return
    from hub.network import apply_networks
    from hub.settings import settings_from_environment

    apply_networks(settings_from_environment(hub.env(), hub.config_path))


def run_learnhub(
    hub: HubProcess, *args: str, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run the `learnhub` CLI as the operator of `hub` would (same settings, the CLI's token)."""
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


def start_hub_once(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run JupyterHub with the repository's ``jupyterhub_config.py`` in the foreground until it
    exits: for a start that must be refused (its output and exit status are the result)."""
    return subprocess.run(
        [str(Path(sys.executable).parent / "jupyterhub"), "-f", str(ROOT / "jupyterhub_config.py")],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def stop_server(hub: HubProcess, username: str, server: str, timeout: float = 60) -> None:
    """Stop the named server and wait until the hub no longer lists it (the API answers
    before a slow stop finishes)."""
    response = hub.api("DELETE", f"/users/{quote(username, safe='')}/servers/{server}")
    assert response.status_code in (202, 204), response.text
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server not in hub.api("GET", f"/users/{quote(username, safe='')}").json()["servers"]:
            return
        time.sleep(0.3)
    raise AssertionError(f"{username}/{server} did not stop")


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
