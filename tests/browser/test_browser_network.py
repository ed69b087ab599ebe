"""Chromium in a network namespace of its own (harness/browser_network.py).

Chromium drops the connections in flight when an address appears on any interface it can see,
and the other xdist worker's Docker tests add bridges and veths all the time: a sign-up POST or
an OAuth callback lost that way failed whole-suite runs. Here: every Chromium process runs in
the test's namespace, which has none of the host's links; names and loopback addresses reach
this machine through the proxy, anything else is refused; nothing is left behind.
"""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Playwright

from harness.browser_network import (
    NETNS_DIR,
    browser_network,
    local_target,
    remove_stale_namespaces,
)
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.harness import TEST_PREFIX


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"<p id=host>{self.headers['Host']}</p>".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def loopback_port() -> Iterator[int]:
    """A page on the host's 127.0.0.1 that shows the Host header it was asked with."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


def _descendants(pid: int) -> set[int]:
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # The field after the parenthesised command name is the state, then the parent.
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            parents.setdefault(parent, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        current = todo.pop()
        found.add(current)
        todo.extend(parents.get(current, []))
    return found


def _browser_process(proxy_flag: str) -> int:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if proxy_flag.encode() in argv and not any(a.startswith(b"--type=") for a in argv):
                return int(entry.name)
    raise AssertionError(f"no Chromium browser process with {proxy_flag}")


def test_chromium_sees_none_of_the_hosts_links(
    playwright_driver: Playwright, loopback_port: int
) -> None:
    with browser_network(CHROMIUM) as network:
        browser = playwright_driver.chromium.launch(
            executable_path=str(network.executable),
            headless=True,
            args=[*CHROMIUM_ARGS, *network.args],
        )
        try:
            page = browser.new_page()
            # A made-up name and *.localhost both reach the host's loopback, with their Host.
            for host in ("learn.test", "mary.learn.localhost", "127.0.0.1"):
                response = page.goto(f"http://{host}:{loopback_port}/")
                assert response is not None and response.status == 200
                assert page.inner_text("#host") == f"{host}:{loopback_port}"
            # Only loopback: an address elsewhere (a container's, another machine's) is refused.
            with pytest.raises(PlaywrightError, match="ERR_SOCKS_CONNECTION_FAILED"):
                page.goto(f"http://192.0.2.7:{loopback_port}/")

            namespace = os.stat(NETNS_DIR / network.namespace).st_ino
            processes = _descendants(_browser_process(network.args[0]))
            commands = []
            for pid in processes:
                try:
                    inode = os.stat(f"/proc/{pid}/ns/net").st_ino
                    # Chromium's helpers rewrite their command line as one string.
                    command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                except FileNotFoundError:
                    continue  # a helper that has ended since
                assert inode == namespace, command
                commands.append(command)
            # The network service, which watches the links, is one of them.
            assert any(b"--utility-sub-type=network.mojom.NetworkService" in c for c in commands)
            links = subprocess.run(
                ["ip", "-n", network.namespace, "-o", "link", "show"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            assert sorted(
                line.split(":")[1].strip().split("@")[0] for line in links.splitlines()
            ) == ["lo", "online0", "online1"]
        finally:
            browser.close()
    assert not (NETNS_DIR / network.namespace).exists()


def test_the_proxy_connects_names_and_loopback_addresses_only() -> None:
    assert local_target("learn.test") == "127.0.0.1"
    assert local_target("localhost") == "127.0.0.1"
    assert local_target("127.0.0.2") == "127.0.0.2"
    assert local_target("::1") == "::1"
    assert local_target("172.17.0.1") is None
    assert local_target("2001:db8::1") is None


def test_a_dead_sessions_namespace_is_removed_and_a_live_ones_kept() -> None:
    # Above the kernel's largest process id (2**22): that session is certainly gone.
    dead, alive = "lht9999999b0", f"{TEST_PREFIX}b999"
    for name in (dead, alive):
        subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        remove_stale_namespaces()
        assert not (NETNS_DIR / dead).exists()
        assert (NETNS_DIR / alive).exists()
    finally:
        for name in (dead, alive):
            subprocess.run(["ip", "netns", "delete", name], check=False, capture_output=True)
