"""Chromium in a network namespace of its own, reaching this machine's loopback through a proxy.

Chromium watches the interfaces of its network namespace over netlink and, when an address
appears or goes on any of them, drops the connections in flight with ERR_NETWORK_CHANGED. The
other xdist worker's Docker tests add and remove bridges and veths all the time, and a dropped
POST (a sign-up), OAuth callback (a one-time code) or script load fails a test for a reason
that has nothing to do with the page. In a namespace of its own, holding only `lo`, Chromium
sees no such change.

The namespace has no route to the host, so Chromium gets out through a SOCKS5 proxy that
listens on the namespace's own loopback (the listening socket is opened from a thread that
enters the namespace; the proxy itself runs in this process, on the host's network) and
connects every target to the host's loopback: a host name to 127.0.0.1, a loopback address to
itself, and refuses anything else. SOCKS rather than an HTTP proxy: every connection (http,
https, WebSocket) is one plain tunnel, so keep-alive, TLS and WebSocket upgrades pass
untouched, and Chromium sends the host name (SOCKS5 resolves remotely), so names such as
`learn.test` need no resolver rules.

Needs root (CAP_SYS_ADMIN): the test machines run the suite as root already (Chromium runs
with --no-sandbox for that reason).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ipaddress
import itertools
import os
import re
import shutil
import socket
import stat
import struct
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from harness.docker import TEST_PREFIX

NETNS_DIR = Path("/run/netns")
#: A namespace is named `<TEST_PREFIX>b<n>`; the process id in the prefix tells a dead session's.
STALE_NETNS = re.compile(r"^lht(\d{7})b\d+$")
_CLONE_NEWNET = 0x40000000
_counter = itertools.count()

#: SOCKS5 (RFC 1928) reply codes.
_SUCCEEDED, _NOT_ALLOWED, _HOST_UNREACHABLE, _REFUSED, _COMMAND_NOT_SUPPORTED = 0, 2, 4, 5, 7
#: How long a connection to a local port may take before the proxy refuses it.
CONNECT_TIMEOUT = 10.0


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def remove_stale_namespaces() -> None:
    """Remove the namespaces of test sessions whose process is gone (a killed run)."""
    if not NETNS_DIR.is_dir():
        return
    for entry in NETNS_DIR.iterdir():
        match = STALE_NETNS.match(entry.name)
        if match and not Path(f"/proc/{int(match.group(1))}").exists():
            # Both workers may find the same leftover at once: the loser's error is harmless.
            subprocess.run(["ip", "netns", "delete", entry.name], check=False, capture_output=True)


def _listening_socket_inside(netns: Path) -> socket.socket:
    """A TCP socket listening on 127.0.0.1 of the namespace at ``netns``.

    A socket stays in the namespace it was made in, whichever thread uses it later; only the
    short-lived thread that makes it enters the namespace (setns changes one thread's).
    """
    made: list[socket.socket] = []
    failed: list[BaseException] = []

    def inside() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(netns, os.O_RDONLY)
            try:
                if libc.setns(fd, _CLONE_NEWNET) != 0:
                    errno = ctypes.get_errno()
                    raise OSError(errno, f"setns {netns}: {os.strerror(errno)}")
            finally:
                os.close(fd)
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sock.listen(128)
            sock.setblocking(False)
            made.append(sock)
        except BaseException as exc:
            failed.append(exc)

    thread = threading.Thread(target=inside, name="enter-browser-netns")
    thread.start()
    thread.join()
    if failed:
        raise failed[0]
    return made[0]


def local_target(host: str) -> str | None:
    """The address on this machine that a connection to ``host`` goes to, or None (refused).

    Every name is this machine (the tests' `learn.test` and `*.localhost` alike); an address
    must be a loopback one.
    """
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return "127.0.0.1"
    return str(address) if address.is_loopback else None


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()


async def _socks5(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """One SOCKS5 connection from Chromium: no authentication, CONNECT only."""
    upstream: asyncio.StreamWriter | None = None
    try:
        version, methods = await reader.readexactly(2)
        await reader.readexactly(methods)
        if version != 5:
            return
        writer.write(b"\x05\x00")
        _, command, _, kind = await reader.readexactly(4)
        if kind == 1:
            host = socket.inet_ntop(socket.AF_INET, await reader.readexactly(4))
        elif kind == 4:
            host = socket.inet_ntop(socket.AF_INET6, await reader.readexactly(16))
        elif kind == 3:
            host = (await reader.readexactly((await reader.readexactly(1))[0])).decode("idna")
        else:
            return
        (port,) = struct.unpack("!H", await reader.readexactly(2))

        def reply(code: int) -> None:
            writer.write(bytes([5, code, 0, 1, 0, 0, 0, 0, 0, 0]))

        if command != 1:
            reply(_COMMAND_NOT_SUPPORTED)
            return
        target = local_target(host)
        if target is None:
            reply(_NOT_ALLOWED)
            return
        try:
            upstream_reader, upstream_writer = await asyncio.wait_for(
                asyncio.open_connection(target, port), CONNECT_TIMEOUT
            )
        except ConnectionRefusedError:
            reply(_REFUSED)
            return
        except (OSError, TimeoutError):
            reply(_HOST_UNREACHABLE)
            return
        upstream = upstream_writer
        reply(_SUCCEEDED)
        await asyncio.gather(_pipe(reader, upstream), _pipe(upstream_reader, writer))
    except (asyncio.IncompleteReadError, ConnectionError, OSError):
        pass
    except asyncio.CancelledError:
        # The proxy is stopping. Ending normally keeps asyncio's stream callback from
        # reporting the cancellation as an error.
        pass
    finally:
        if upstream is not None:
            upstream.close()
        writer.close()


class _Proxy:
    """The SOCKS5 proxy, on its own asyncio loop in a daemon thread."""

    def __init__(self, sock: socket.socket) -> None:
        self.port = int(sock.getsockname()[1])
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        started = threading.Event()
        failed: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(self._loop)

            async def start() -> None:
                self._server = await asyncio.start_server(_socks5, sock=sock)

            try:
                self._loop.run_until_complete(start())
            except BaseException as exc:
                failed.append(exc)
                return
            finally:
                started.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="browser-socks-proxy", daemon=True)
        self._thread.start()
        started.wait()
        if failed:
            self._loop.close()
            sock.close()
            raise failed[0]

    def stop(self) -> None:
        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()


@dataclass(frozen=True)
class BrowserNetwork:
    """What a Chromium launch needs to run inside its namespace."""

    #: A script that starts Chromium inside the namespace: Playwright's ``executable_path``.
    executable: Path
    #: Chromium flags that send every connection, loopback ones too, through the proxy.
    args: list[str]
    namespace: str


@contextmanager
def browser_network(chromium: Path) -> Iterator[BrowserNetwork]:
    """A network namespace with only `lo`, a proxy into this machine's loopback, and a script
    that runs ``chromium`` inside; all removed at the end."""
    remove_stale_namespaces()
    name = f"{TEST_PREFIX}b{next(_counter)}"
    _ip("netns", "add", name)
    folder = Path(tempfile.mkdtemp(prefix=f"{name}-"))
    proxy: _Proxy | None = None
    try:
        _ip("-n", name, "link", "set", "lo", "up")
        # A link with an address (TEST-NET-1, routed nowhere), so that Chromium counts itself
        # online: with `lo` alone navigator.onLine is false, which a page may act on. A veth
        # pair with both ends inside (this kernel has no `dummy` links); the host sees neither.
        _ip("-n", name, "link", "add", "online0", "type", "veth", "peer", "name", "online1")
        _ip("-n", name, "address", "add", "192.0.2.1/32", "dev", "online0")
        _ip("-n", name, "link", "set", "online1", "up")
        _ip("-n", name, "link", "set", "online0", "up")
        proxy = _Proxy(_listening_socket_inside(NETNS_DIR / name))
        script = folder / "chromium"
        # Playwright talks to Chromium over pipes (fds 3 and 4), which `exec` keeps.
        script.write_text(f'#!/bin/sh\nexec nsenter --net={NETNS_DIR / name} {chromium} "$@"\n')
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
        yield BrowserNetwork(
            executable=script,
            args=[
                f"--proxy-server=socks5://127.0.0.1:{proxy.port}",
                # Without this Chromium never proxies loopback names and addresses.
                "--proxy-bypass-list=<-loopback>",
            ],
            namespace=name,
        )
    finally:
        if proxy is not None:
            proxy.stop()
        with contextlib.suppress(subprocess.CalledProcessError):
            _ip("netns", "delete", name)
        shutil.rmtree(folder, ignore_errors=True)
