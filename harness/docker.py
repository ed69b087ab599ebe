"""Docker objects of a test or benchmark run: named by a prefix, removed by it, logs on failure."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.system import host_lock

#: Every container and volume a test session creates starts with this; cleanup goes by it. The
#: process id keeps two sessions on one Docker engine (a developer's and CI's) out of each other's
#: way; leftovers of sessions that died are removed by :func:`remove_stale_test_objects`.
TEST_PREFIX = f"lht{os.getpid():07d}"
STALE_PATTERN = re.compile(r"^/?lht(\d{7})")


def _docker(*args: str) -> list[str]:
    """Run the docker CLI; its output split into words (nothing when it fails)."""
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=False
    ).stdout.split()


def docker_cleanup(prefix: str = TEST_PREFIX) -> None:
    """Remove every container, volume and network whose name starts with `prefix`."""
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
    """Remove containers and volumes left by test sessions whose process is gone.

    Under a machine-wide lock: every test process does this as it starts (both xdist workers,
    other checkouts' runs), and two removing the same leftovers at once raced on their
    firewall chains (`iptables -X`: no chain by that name).
    """
    with host_lock("stale-test-objects"):
        _remove_stale_test_objects()


def _remove_stale_test_objects() -> None:
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


class HeldStart:
    """A course server's start held in the middle: its container is paused the moment Docker
    starts it, so the Hub shows the start's progress page until :meth:`release` unpauses it.

    JupyterHub's spawn page waits one second for a start before it sends the browser to the
    progress page; on a fast machine a course server answers within that second, and the
    browser goes straight to JupyterLab (a full run at a5e7cb8 on this session's machine). Tests
    of the progress page hold the start instead of hoping for a slow one. Docker's event stream
    is open before the start is asked for, and a paused container answers nothing, so the Hub
    keeps waiting (up to its ``http_timeout``) until the release.
    """

    def __init__(self, engine: Any, prefix: str, user: str, course: str) -> None:
        labels = [f"learnhub.prefix={prefix}", f"learnhub.user={user}", f"learnhub.course={course}"]
        self._engine = engine
        self._events = engine.events(
            decode=True, filters={"type": "container", "event": "start", "label": labels}
        )
        self._paused: list[str] = []
        self._held = threading.Event()
        self._thread = threading.Thread(target=self._pause_on_start, daemon=True)
        self._thread.start()

    def _pause_on_start(self) -> None:
        try:
            for event in self._events:
                self._engine.containers.get(event["id"]).pause()
                self._paused.append(event["id"])
                self._held.set()
                return
        except Exception:  # the stream closed by release(); a pause failure shows as no hold
            return

    def wait_held(self, timeout: float = 120) -> None:
        """Until the container has been started and paused; AssertionError after ``timeout``."""
        assert self._held.wait(timeout), "the course container was not started"

    def release(self) -> None:
        """Let the start go on (idempotent)."""
        self._events.close()
        for container_id in self._paused:
            with contextlib.suppress(Exception):  # already unpaused, or removed by the Hub
                self._engine.containers.get(container_id).unpause()
        self._paused.clear()


@contextlib.contextmanager
def held_start(engine: Any, prefix: str, user: str, course: str) -> Iterator[HeldStart]:
    """:class:`HeldStart` for the block; released at its end whatever happens."""
    hold = HeldStart(engine, prefix, user, course)
    try:
        yield hold
    finally:
        hold.release()
