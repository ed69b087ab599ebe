"""Docker objects of a test or benchmark run: named by a prefix, removed by it, logs on failure."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

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
