"""docs/how-to/production.md, followed as written on this machine (issue 15).

The how-to marks what the test runs: a fenced block whose info string is ``sh howto`` holds
commands, run in order in one root ``bash`` (``-e -o pipefail``); ``<lang> howto-file=PATH`` is a
file the operator writes at PATH. :func:`howto_steps` reads them from the page itself, so a
changed page is what is tested. The test substitutes only what an operator substitutes, and what
sharing one machine with other test runs requires; the page lists each substitution in "How this
page is tested" (:data:`DOC`), and :class:`Substitutions` is that list in code.

There is no systemd here (PID 1 is not systemd): ``systemctl`` is a stand-in that starts the
installed unit's ``ExecStartPre=`` and ``ExecStart=`` lines, read from the unit file with its
``WorkingDirectory=``, ``Environment=``, ``EnvironmentFile=`` and ``UMask=``. nginx is Debian's,
with Debian's ``nginx.conf`` moved under the test's folder. PostgreSQL is a cluster of Debian's
binaries on a free port; Stripe a loopback stand-in that speaks its wire format.

Then the result is checked from outside, as the page promises: https through nginx with the test
CA (httpx and Chromium), http -> https, a member's course server on their own subdomain under the
wildcard certificate, both databases in PostgreSQL (no SQLite file), a genuinely signed Stripe
webhook granting the course, health and both metrics endpoints answering.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import selectors
import shutil
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest
import stripe
import yaml

from harness.edge import EdgeCA, make_ca
from harness.hub import let_service_user_through
from harness.names import resolve_localhost_subdomains
from harness.stripe_standin import API_KEY, StripeStandIn
from tests.billing.conftest import postgres_server
from tests.harness import ROOT, TEST_PREFIX, docker_cleanup, free_port

__all__ = ["postgres_server"]  # the session's PostgreSQL cluster, shared with tests/billing

pytestmark = [pytest.mark.docker]

DOC = ROOT / "docs" / "how-to" / "production.md"
#: The page's host name, and the test's: Chromium and curl resolve every `*.localhost` name to
#: loopback; this process does after :func:`resolve_localhost_subdomains`.
DOC_HOST = "learn.example.org"
HOST = "learn.localhost"
COURSE = "algorithms-in-python"
COURSE_AMOUNT = 6900
MEMBER = "ada-howto"
NGINX = Path("/usr/sbin/nginx")
DEBIAN_NGINX_CONF = Path("/etc/nginx/nginx.conf")
#: systemd's PATH for system services.
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: Host folders the page writes to, each moved under the test's folder (the checkout stands in
#: for /opt/learnhub).
MOVED = ("/etc/learnhub", "/etc/nginx", "/etc/systemd", "/var/lib/learnhub", "/var/cache/nginx")
#: How long one block of commands may take (step 6's `learnhub network apply`, a busy machine).
STEP_TIMEOUT = 300
READY_LINE = "JupyterHub is now running at"


# -- the page --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One marked block of the page: commands to run, or a file to write at ``path``."""

    line: int
    text: str
    path: str | None = None


FENCE = re.compile(r"^(?P<indent>\s*)```(?P<info>.*)$")


def howto_steps(markdown: str) -> list[Step]:
    """The blocks marked ``howto`` (commands) or ``howto-file=PATH`` (a file), in page order."""
    steps: list[Step] = []
    lines = markdown.splitlines()
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if not opening or not opening["info"].strip():
            index += 1
            continue
        indent, words = opening["indent"], opening["info"].split()
        body: list[str] = []
        index += 1
        while not lines[index].strip().startswith("```"):
            body.append(lines[index][len(indent) :] if lines[index].strip() else "")
            index += 1
        index += 1
        text = "\n".join(body) + "\n"
        first_line = index - len(body) - 1
        if "howto" in words[1:]:
            steps.append(Step(first_line, text))
        files = [w.split("=", 1)[1] for w in words[1:] if w.startswith("howto-file=")]
        if files:
            steps.append(Step(first_line, text, files[0]))
    return steps


# -- what the test substitutes ---------------------------------------------------------------


@dataclass
class Substitutions:
    """Everything the test changes in what the page says, and nothing else."""

    root: Path  # the test's stand-in for `/`
    https_port: int
    http_port: int
    bind_port: int
    pg_port: int
    db_password: str
    secrets: dict[str, str]
    stripe_api_base: str
    prefix: str

    def path(self, path: str) -> Path:
        """Where a host path of the page is in the test."""
        return Path(self.text(path))

    def text(self, text: str) -> str:
        """Names, ports, paths and the database password, in commands and files alike."""
        text = re.sub(
            rf"(https?)://{re.escape(DOC_HOST)}",
            lambda m: f"{m[1]}://{HOST}:{self.https_port if m[1] == 'https' else self.http_port}",
            text,
        )
        text = text.replace(DOC_HOST, HOST)
        text = text.replace("DB-PASSWORD", self.db_password)
        text = text.replace("@127.0.0.1/", f"@127.0.0.1:{self.pg_port}/")
        text = text.replace("http://127.0.0.1:8000/", f"http://127.0.0.1:{self.bind_port}/")
        text = text.replace("/opt/learnhub", str(ROOT))
        moved = "|".join(re.escape(p) for p in MOVED)
        return re.sub(rf"(?<![\w.-])({moved})(?=/|\b)", lambda m: f"{self.root}{m[1]}", text)

    def settings(self, text: str) -> str:
        """The page's settings file, plus what several test runs on one machine need apart:
        ports, the edge's address and cache, Docker names; and the Stripe stand-in."""
        data: dict[str, Any] = yaml.safe_load(self.text(text))
        data["hub"].update(
            {"hub_port": free_port(), "proxy_api_port": free_port(), "service_port": free_port()}
        )
        if "webhook_port" in data["hub"]:
            data["hub"]["webhook_port"] = free_port()
        data["edge"].update(
            {
                "listen_address": "127.0.0.1",
                "http_port": self.http_port,
                "cache_dir": str(self.root / "var" / "cache" / "nginx" / "learnhub"),
            }
        )
        data["spawner"] = {"name_prefix": self.prefix, "network": f"{self.prefix}-net"}
        data["payments"]["stripe_api_base"] = self.stripe_api_base
        return yaml.safe_dump(data, sort_keys=False)

    def secrets_file(self, text: str) -> str:
        """`NAME=...` lines with the test's values (every name the page lists must have one),
        and the optional full-admin token the page mentions: the test's stand-in for a GitHub
        sign-in (it makes the member and their token through the Hub API)."""
        names = [line.split("=", 1)[0].strip() for line in text.splitlines() if line.strip()]
        for name in names:
            assert name in self.secrets, f"the page asks for {name}; the test has no value"
        assert "LEARNHUB_ADMIN_TOKEN" not in names, "the page's list needs no full-admin token"
        names.append("LEARNHUB_ADMIN_TOKEN")
        return "".join(f"{name}={self.secrets[name]}\n" for name in names)

    def assert_contained(self, commands: str) -> None:
        """Refuse to run a command that would still touch a host path the page names."""
        for host_path in (*MOVED, "/opt/learnhub", "/etc/letsencrypt"):
            found = re.search(rf"(?<![\w.-]){re.escape(host_path)}(?=/|\b)", commands)
            assert found is None, f"{host_path} is not moved in:\n{commands}"


# -- the machine: test CA, nginx as Debian runs it, a systemctl stand-in ---------------------


def make_wildcard_certificate(folder: Path) -> EdgeCA:
    """A test CA, and `fullchain.pem` / `privkey.pem` for HOST and *.HOST in ``folder`` (what
    the operator brings to step 2), named as the how-to names them."""
    ca_folder = folder.parent / "test-ca"
    ca_folder.mkdir(exist_ok=True)
    made = make_ca(ca_folder, HOST)
    shutil.copyfile(made.chain_pem, folder / "fullchain.pem")
    shutil.copyfile(made.key_pem, folder / "privkey.pem")
    (folder / "privkey.pem").chmod(0o600)
    return made


def install_debian_nginx(sub: Substitutions) -> Path:
    """What `apt-get install nginx` leaves, under the test's folder: Debian's nginx.conf (its
    paths moved; workers as root, since pytest's folders are root's 0700), its mime.types, an
    empty conf.d and the placeholder default site (on the test's http port). Returns the main
    configuration file."""
    etc = sub.path("/etc/nginx")
    for folder in ("conf.d", "sites-enabled", "modules-enabled"):
        (etc / folder).mkdir(parents=True, exist_ok=True)
    shutil.copy(Path("/etc/nginx/mime.types"), etc / "mime.types")
    state = sub.root / "var" / "lib" / "nginx"
    (state).mkdir(parents=True, exist_ok=True)
    (sub.root / "var" / "log" / "nginx").mkdir(parents=True, exist_ok=True)
    (sub.root / "run").mkdir(parents=True, exist_ok=True)
    conf = DEBIAN_NGINX_CONF.read_text()
    conf = re.sub(r"^user\s+www-data;", "user root;", conf, flags=re.M)
    conf = conf.replace("/run/nginx.pid", str(sub.root / "run" / "nginx.pid"))
    conf = conf.replace("/var/log/nginx", str(sub.root / "var" / "log" / "nginx"))
    conf = sub.text(conf)
    # Debian's build keeps request bodies and proxied answers under /var/lib/nginx.
    temp_paths = "".join(
        f"\t{name}_temp_path {state / name};\n"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf = conf.replace("http {\n", "http {\n" + temp_paths, 1)
    main = etc / "nginx.conf"
    main.write_text(conf)
    (etc / "sites-enabled" / "default").write_text(
        f"server {{\n\tlisten 127.0.0.1:{sub.http_port} default_server;\n\treturn 404;\n}}\n"
    )
    return main


NGINX_SHIM = """#!/bin/sh
# Debian's nginx with Debian's configuration, moved under the test's folder (-c, -p).
exec {nginx} -c {conf} -p {prefix}/ -e {error_log} "$@"
"""

SYSTEMCTL_SHIM = '''#!{python}
"""A stand-in for systemctl where systemd is not PID 1 (tests/test_production_howto.py).

`enable --now UNIT` and `start UNIT` run the installed unit's ExecStartPre= lines, then start its
ExecStart= line in the background, as systemd would: from the unit file alone (its
WorkingDirectory=, Environment=, EnvironmentFile=, UMask=; systemd's PATH), never from the
caller's environment. `daemon-reload` has nothing to do; `reload nginx` is `nginx -s reload`.
"""
import os, re, shlex, subprocess, sys

ROOT = {root!r}
MOVES = {moves!r}
CHECKOUT = {checkout!r}
NGINX = {nginx_shim!r}


def moved(text):
    text = text.replace("/opt/learnhub", CHECKOUT)
    pattern = "|".join(re.escape(p) for p in MOVES)
    return re.sub(r"(?<![\\w.-])(" + pattern + r")(?=/|\\b)", lambda m: ROOT + m[1], text)


def unit_file(name):
    name = name if name.endswith(".service") else name + ".service"
    path = ROOT + "/etc/systemd/system/" + name
    if not os.path.exists(path):
        sys.exit(f"Failed to start {{name}}: Unit {{name}} not found.")
    return name, path


def service_section(path):
    values = {{}}
    section = None
    for raw in open(path):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
            continue
        if section == "[Service]":
            key, value = line.split("=", 1)
            values.setdefault(key.strip(), []).append(moved(value.strip()))
    return values


def environment(values):
    env = {{"PATH": {path!r}, "LANG": "C.UTF-8"}}
    for line in values.get("Environment", []):
        for item in shlex.split(line):
            key, value = item.split("=", 1)
            env[key] = value
    for name in values.get("EnvironmentFile", []):
        optional = name.startswith("-")
        name = name.lstrip("-")
        if not os.path.exists(name):
            if optional:
                continue
            sys.exit(f"EnvironmentFile {{name}} not found")
        for raw in open(name):
            line = raw.strip()
            if line and not line.startswith(("#", ";")):
                key, value = line.split("=", 1)
                env[key.strip()] = value.strip().strip('"')
    return env


def start(unit):
    name, path = unit_file(unit)
    values = service_section(path)
    env = environment(values)
    cwd = values.get("WorkingDirectory", ["/"])[-1]
    umask = int(values.get("UMask", ["0022"])[-1], 8)
    def child():
        os.umask(umask)
    for line in values.get("ExecStartPre", []):
        done = subprocess.run(shlex.split(line), cwd=cwd, env=env, preexec_fn=child)
        if done.returncode != 0:
            sys.exit(f"Job for {{name}} failed: {{line}} exited with {{done.returncode}}")
    (command,) = values["ExecStart"]
    os.makedirs(ROOT + "/run", exist_ok=True)
    journal = open(ROOT + "/run/" + name + ".journal", "ab")
    process = subprocess.Popen(
        shlex.split(command), cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=journal,
        stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=child,
    )
    with open(ROOT + "/run/" + name + ".pid", "w") as pid:
        pid.write(str(process.pid))


args = [a for a in sys.argv[1:] if not a.startswith("--") or a == "--now"]
if args == ["daemon-reload"]:
    sys.exit(0)
if args[:1] == ["reload"] and args[1:] in (["nginx"], ["nginx.service"]):
    sys.exit(subprocess.run([NGINX, "-s", "reload"]).returncode)
if args[:1] == ["start"] or args[:2] == ["enable", "--now"]:
    for unit in args[1:] if args[0] == "start" else args[2:]:
        start(unit)
    sys.exit(0)
sys.exit(f"systemctl stand-in: {{' '.join(sys.argv[1:])}} is not something the how-to does")
'''


def install_shims(sub: Substitutions, nginx_conf: Path) -> Path:
    """`nginx` and `systemctl` for the shell that follows the page. Returns their folder."""
    bin_dir = sub.root / "bin"
    bin_dir.mkdir()
    nginx = bin_dir / "nginx"
    nginx.write_text(
        NGINX_SHIM.format(
            nginx=NGINX,
            conf=nginx_conf,
            prefix=sub.root / "var" / "lib" / "nginx",
            error_log=sub.root / "var" / "log" / "nginx" / "error.log",
        )
    )
    systemctl = bin_dir / "systemctl"
    systemctl.write_text(
        SYSTEMCTL_SHIM.format(
            python=sys.executable,
            root=str(sub.root),
            moves=list(MOVED),
            checkout=str(ROOT),
            nginx_shim=str(nginx),
            path=SYSTEMD_PATH,
        )
    )
    for shim in (nginx, systemctl):
        shim.chmod(0o755)
    return bin_dir


class RootShell:
    """One root bash, as the operator's terminal: state (cwd, variables) carries over."""

    def __init__(self, cwd: Path, env: dict[str, str], transcript: Path) -> None:
        self.transcript = transcript.open("a")
        self.proc = subprocess.Popen(
            ["bash", "--noprofile", "--norc", "-e", "-o", "pipefail"],
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.selector = selectors.DefaultSelector()
        assert self.proc.stdout is not None
        os.set_blocking(self.proc.stdout.fileno(), False)
        self.selector.register(self.proc.stdout, selectors.EVENT_READ)
        self.count = 0

    def run(self, commands: str, script_dir: Path) -> str:
        """Run ``commands`` as the next block; its output. Fails with the output if one of them
        fails (``-e``: the shell ends) or the block takes longer than STEP_TIMEOUT."""
        self.count += 1
        script = script_dir / f"step-{self.count:02d}.sh"
        script.write_text(commands)
        marker = f"@@howto-step-{self.count}-done"
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f". {script}\necho {marker}\n".encode())
        self.proc.stdin.flush()
        output = b""
        began = time.monotonic()
        deadline = began + STEP_TIMEOUT
        while marker.encode() not in output:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"step timed out:\n{commands}\n--- output ---\n{output!r}")
            if not self.selector.select(timeout=min(left, 1)):
                if self.proc.poll() is not None:
                    break
                continue
            chunk = self.proc.stdout.read() or b""
            if not chunk and self.proc.poll() is not None:
                break
            output += chunk
        text = output.decode(errors="replace").replace(marker + "\n", "")
        self.transcript.write(f"$ {commands}{text}# ({time.monotonic() - began:.1f} s)\n\n")
        self.transcript.flush()
        if marker not in output.decode(errors="replace"):
            raise AssertionError(
                f"this step of {DOC.name} failed (shell exited {self.proc.poll()}):\n"
                f"{commands}--- output ---\n{text}"
            )
        return text

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.selector.close()
        self.transcript.close()


# -- the platform the page builds -------------------------------------------------------------


@dataclass
class Platform:
    sub: Substitutions
    ca: EdgeCA
    settings: dict[str, Any]
    standin: StripeStandIn
    pg_admin: str  # postgresql+psycopg://postgres@127.0.0.1:PORT
    transcript: Path

    @property
    def public(self) -> str:
        return f"https://{HOST}:{self.sub.https_port}/"

    @property
    def data_dir(self) -> Path:
        return Path(self.settings["hub"]["data_dir"])

    def client(self, **kwargs: Any) -> httpx.Client:
        """An https client that trusts the test CA only."""
        trust = ssl.create_default_context(cafile=str(self.ca.ca_pem))
        return httpx.Client(verify=trust, timeout=60, **kwargs)

    def admin(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The Hub API through the edge, with the optional full-admin token (standing in for a
        GitHub sign-in, which cannot happen here)."""
        headers = {"Authorization": f"token {self.sub.secrets['LEARNHUB_ADMIN_TOKEN']}"}
        with self.client() as client:
            return client.request(method, f"{self.public}hub/api{path}", headers=headers, **kwargs)


def wait_for_line(journal: Path, line: str, pid_file: Path, timeout: float = 300) -> None:
    """Wait for ``line`` in the unit's output (what step 6 tells the operator to watch)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = journal.read_text(errors="replace") if journal.exists() else ""
        if line in text:
            return
        pid = int(pid_file.read_text())
        if not Path(f"/proc/{pid}").exists():
            raise AssertionError(f"learnhub-hub exited:\n{text[-6000:]}")
        time.sleep(0.5)
    raise AssertionError(f"no {line!r} within {timeout}s:\n{journal.read_text()[-6000:]}")


def hub_children(hub_port: int) -> list[int]:
    """Processes the test's Hub started as its services (the culler, the LearnHub service,
    the grading worker) or in its course containers: their Hub API address names the Hub's
    port, which is this test's alone."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        for item in environ:
            if item.startswith(b"JUPYTERHUB_API_URL=") and f":{hub_port}/".encode() in item:
                pids.append(int(entry.name))
    return pids


def stop_unit(sub: Substitutions, hub_port: int) -> None:
    """Stop what the unit started, as a platform that is thrown away: its services at once
    (asked one by one, JupyterHub spends seconds on each), the Hub, and its proxy, which
    outlives the Hub (`cleanup_proxy` is off). Only processes this test's unit started."""
    pid_file = sub.root / "run" / "learnhub-hub.service.pid"
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text())
    proxy = sub.path("/var/lib/learnhub") / "proxy.pid"
    proxy_pid = int(proxy.read_text()) if proxy.exists() else None
    for other in [*hub_children(hub_port), pid]:
        try:
            os.kill(other, signal.SIGKILL if other != pid else signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 60  # the unit's TimeoutStopSec
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    for other in [*hub_children(hub_port), *([proxy_pid] if proxy_pid else [])]:
        try:
            os.kill(other, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if Path(f"/proc/{pid}").exists():
        os.killpg(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def platform(
    images: None,
    docker_prefix_cleanup: None,
    postgres_server: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Platform]:
    """Steps 2 to 7 of the page, run as written (with the listed substitutions)."""
    if not NGINX.exists() or not DEBIAN_NGINX_CONF.exists():
        pytest.fail("Debian's nginx is not installed: scripts/setup.sh --test installs it")
    root = tmp_path_factory.mktemp("howto")
    for folder in ("etc", "etc/systemd/system", "var/lib", "var/cache", "run", "root"):
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / folder).chmod(0o755)
    # The service's account passes through the test's folders to /etc/learnhub and the data
    # folder, as through / on a real host.
    let_service_user_through(root / "etc", root / "var" / "lib")
    standin = StripeStandIn().start()
    pg_port = int(urlsplit(postgres_server).port or 5432)
    webhook_secret = "whsec_" + secrets.token_hex(16)
    values = {
        name: secrets.token_hex(32)
        for name in (
            "LEARNHUB_COOKIE_SECRET",
            "LEARNHUB_CLI_TOKEN",
            "LEARNHUB_SERVICE_TOKEN",
            "LEARNHUB_METRICS_TOKEN",
            "LEARNHUB_OAUTH_CLIENT_SECRET",
            "LEARNHUB_ADMIN_TOKEN",
        )
    }
    values["LEARNHUB_STRIPE_SECRET_KEY"] = API_KEY
    values["LEARNHUB_STRIPE_WEBHOOK_SECRETS"] = webhook_secret
    prefix = f"{TEST_PREFIX}howto"
    sub = Substitutions(
        root=root,
        https_port=free_port(),
        http_port=free_port(),
        bind_port=free_port(),
        pg_port=pg_port,
        db_password=secrets.token_hex(12),
        secrets=values,
        stripe_api_base=standin.url,
        prefix=prefix,
    )
    ca = make_wildcard_certificate(root / "root")
    nginx_conf = install_debian_nginx(sub)
    bin_dir = install_shims(sub, nginx_conf)
    # nginx runs, as Debian's package leaves it after `apt-get install nginx` (step 1).
    nginx = subprocess.Popen(
        [str(bin_dir / "nginx"), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    transcript = root / "transcript.txt"
    env = {
        "PATH": f"{bin_dir}:{SYSTEMD_PATH}",
        "HOME": str(root / "root"),
        "LANG": "C.UTF-8",
        "PGHOST": "127.0.0.1",
        "PGPORT": str(pg_port),
        "CURL_CA_BUNDLE": str(ca.ca_pem),
    }
    shell = RootShell(root / "root", env, transcript)
    settings: dict[str, Any] = {}
    hub_port = 0
    try:
        steps = howto_steps(DOC.read_text())
        for step in steps:
            if step.path is None:
                commands = sub.text(step.text)
                sub.assert_contained(commands)
                shell.run(commands, root)
                if "enable --now learnhub-hub" in commands:
                    # What the page says to watch for before going on.
                    wait_for_line(
                        root / "run" / "learnhub-hub.service.journal",
                        READY_LINE,
                        root / "run" / "learnhub-hub.service.pid",
                    )
                continue
            target = sub.path(step.path)
            if target.name == "learnhub.yaml":
                text = sub.settings(step.text)
                settings = yaml.safe_load(text)
                hub_port = int(settings["hub"]["hub_port"])
            elif target.name == "secrets.env":
                text = sub.secrets_file(step.text)
            else:
                text = sub.text(step.text)
            target.write_text(text)
        yield Platform(sub, ca, settings, standin, postgres_server, transcript)
    finally:
        shell.close()
        print("===== the how-to, as run =====\n" + transcript.read_text()[-12000:])
        journal = root / "run" / "learnhub-hub.service.journal"
        if journal.exists():
            print("===== learnhub-hub =====\n" + journal.read_text(errors="replace")[-8000:])
        stop_unit(sub, hub_port)
        nginx.terminate()
        nginx.wait(timeout=30)
        standin.stop()
        docker_cleanup(prefix)
        with psycopg.connect(postgres_server.replace("+psycopg", "") + "/postgres") as conn:
            conn.autocommit = True
            for database in ("jupyterhub", "learnhub"):
                conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            conn.execute("DROP ROLE IF EXISTS learnhub")


def test_the_page_marks_every_step_the_test_follows() -> None:
    steps = howto_steps(DOC.read_text())
    files = [step.path for step in steps if step.path]
    assert files == ["/etc/learnhub/learnhub.yaml", "/etc/learnhub/secrets.env"]
    commands = "".join(step.text for step in steps if step.path is None)
    for needed in (
        "install -m 0600 privkey.pem",
        "createdb -O learnhub jupyterhub",
        "learnhub check",
        "learnhub edge config",
        "nginx -t && systemctl reload nginx",
        "systemctl enable --now learnhub-hub",
        "curl -sI http://learn.example.org/",
        "learnhub reconcile",
    ):
        assert needed in commands, needed
    # A block the test cannot run is never marked: certbot, following the journal.
    assert "certbot" not in commands and "journalctl" not in commands


def test_https_through_nginx_with_the_test_ca_and_http_redirects(platform: Platform) -> None:
    resolve_localhost_subdomains()
    with platform.client() as client:
        page = client.get(platform.public + "services/learnhub/")
        assert page.status_code == 200
        assert f'data-course="{COURSE}"' in page.text
        assert page.headers["strict-transport-security"].startswith("max-age=")
        plain = client.get(f"http://{HOST}:{platform.sub.http_port}/services/learnhub/")
    assert plain.status_code == 301
    assert plain.headers["location"] == platform.public + "services/learnhub/"
    # The check can fail: a client that trusts only the public CAs refuses the edge.
    with httpx.Client(timeout=30) as public_trust, pytest.raises(httpx.ConnectError):
        public_trust.get(platform.public + "services/learnhub/")


def test_both_databases_are_in_postgresql(platform: Platform) -> None:
    assert not list(platform.data_dir.rglob("*.sqlite")), "a SQLite database was made"
    base = platform.pg_admin.replace("+psycopg", "")
    with psycopg.connect(base + "/jupyterhub") as conn:
        services = {row[0] for row in conn.execute("SELECT name FROM services")}
    assert {"learnhub", "learnhub-cli"} <= services
    with psycopg.connect(base + "/learnhub") as conn:
        (revision,) = conn.execute("SELECT version_num FROM alembic_version").fetchone() or ("",)
    assert revision


def running_command(cmdline: Path) -> str:
    """A process's command line from ``/proc/<pid>/cmdline`` ("" when it has gone)."""
    try:
        return cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def test_a_signed_stripe_webhook_opens_the_course_on_the_members_subdomain(
    platform: Platform,
) -> None:
    resolve_localhost_subdomains()
    # GitHub sign-in cannot happen here: the member and their token come from the Hub API.
    made = platform.admin("POST", f"/users/{MEMBER}")
    assert made.status_code == 201, made.text
    minted = platform.admin("POST", f"/users/{MEMBER}/tokens", json={"note": "how-to test"})
    assert minted.status_code == 201, minted.text
    member = {"Authorization": f"token {minted.json()['token']}"}
    with platform.client(headers=member) as client:
        refused = client.post(f"{platform.public}hub/api/users/{MEMBER}/servers/{COURSE}")
        assert refused.status_code == 403, refused.text  # not paid yet

        # Stripe: the checkout LearnHub recorded (in PostgreSQL) is paid; its events arrive
        # signed with the webhook secret, through the edge.
        platform.standin.record_sessions_in = platform.pg_admin + "/learnhub"
        session = platform.standin.course_checkout(MEMBER, COURSE, COURSE_AMOUNT, "Algorithms")
        for event in platform.standin.sim.complete_checkout(session):
            payload = json.dumps(event)
            secret = platform.sub.secrets["LEARNHUB_STRIPE_WEBHOOK_SECRETS"]
            signature = stripe.WebhookSignature.generate_signature_header(payload, secret)
            answer = client.post(
                f"{platform.public}services/learnhub/stripe/webhook",
                content=payload,
                headers={"Stripe-Signature": signature, "Content-Type": "application/json"},
            )
            assert answer.status_code == 200, answer.text
        deadline = time.monotonic() + 60
        while MEMBER not in platform.admin("GET", f"/groups/course-{COURSE}").json()["users"]:
            assert time.monotonic() < deadline, "the paid course was not granted"
            time.sleep(0.3)
        # The page's settings run the webhook intake: the edge sent the events to it.
        written = yaml.safe_load(platform.sub.path("/etc/learnhub/learnhub.yaml").read_text())
        intake = f"-m hub.billing.intake --host 127.0.0.1 --port {written['hub']['webhook_port']}"
        commands = [running_command(p) for p in Path("/proc").glob("[0-9]*/cmdline")]
        assert any(intake in command for command in commands), intake

        started = client.post(f"{platform.public}hub/api/users/{MEMBER}/servers/{COURSE}")
        assert started.status_code in (201, 202), started.text
        deadline = time.monotonic() + 180
        while True:
            model = client.get(f"{platform.public}hub/api/users/{MEMBER}").json()
            server = model["servers"].get(COURSE, {})
            if server.get("ready"):
                break
            assert time.monotonic() < deadline and server.get("pending"), model
            time.sleep(0.5)
        # On the member's own origin, through nginx, under the wildcard certificate.
        origin = f"https://{MEMBER}.{HOST}:{platform.sub.https_port}/"
        assert server["url"].startswith(origin), server["url"]
        status = client.get(server["url"] + "api/status")
    assert status.status_code == 200, status.text
    assert "kernels" in status.json()


def test_health_and_metrics_answer_through_the_edge(platform: Platform) -> None:
    resolve_localhost_subdomains()
    scraper = {"Authorization": f"Bearer {platform.sub.secrets['LEARNHUB_METRICS_TOKEN']}"}
    with platform.client() as client:
        health = client.get(platform.public + "services/learnhub/health")
        assert health.status_code == 200, health.text
        assert {name for name, check in health.json()["checks"].items() if check["ok"]} == {
            "database",
            "hub",
            "event_queue",
            "webhook_intake",  # the page sets hub.webhook_port
        }
        service = client.get(platform.public + "services/learnhub/metrics", headers=scraper)
        hub = client.get(platform.public + "hub/metrics", headers=scraper)
        anonymous = client.get(platform.public + "services/learnhub/metrics")
    assert service.status_code == 200 and "learnhub_database_up 1.0" in service.text
    assert hub.status_code == 200 and "jupyterhub_" in hub.text
    assert anonymous.status_code == 401


def test_chromium_loads_the_catalog_over_https(platform: Platform) -> None:
    from playwright.sync_api import sync_playwright

    from tests.browser.conftest import launch_chromium

    # The browser's proxy takes *.localhost to loopback; it trusts the test CA and no other
    # unknown issuer.
    args = [f"--ignore-certificate-errors-spki-list={platform.ca.spki_sha256}"]
    with sync_playwright() as driver, launch_chromium(driver, args) as browser:
        page = browser.new_page()
        response = page.goto(f"http://{HOST}:{platform.sub.http_port}/services/learnhub/")
        assert response is not None and response.status == 200
        assert page.url == platform.public + "services/learnhub/"
        details = response.security_details()
        assert details is not None and details.get("subjectName") == HOST
        assert page.locator(f'article[data-course="{COURSE}"]').count() == 1


def test_every_process_of_the_unit_stays_up(platform: Platform) -> None:
    """The Hub's managed services start and keep running: the grading worker, given no secret,
    exited at every start in production (the settings' guard asked it for the Hub's)."""
    journal = (platform.sub.root / "run" / "learnhub-hub.service.journal").read_text()
    assert "JupyterHub is now running at" in journal
    crashes = re.findall(r"Service \S+ exited with status \d+", journal)
    assert crashes == [], crashes


def test_the_runbook_said_what_it_promised(platform: Platform) -> None:
    text = platform.transcript.read_text()
    assert f"location: {platform.public}services/learnhub/" in text.lower()
    assert "course membership re-applied" in text
    assert "settings OK" in text and "mode production" in text
