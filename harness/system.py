"""Facts about this machine that tests and benchmarks ask: free ports, installed programs; and
a lock for what exists once per machine."""

from __future__ import annotations

import fcntl
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    """A TCP port that is free right now on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def have(binary: str) -> bool:
    """Whether `binary` is on PATH."""
    return shutil.which(binary) is not None


@contextmanager
def host_lock(name: str) -> Iterator[None]:
    """Hold the machine-wide lock `name` (an exclusive `flock` on a file in the temporary folder).

    For what exists once per machine, not once per test process: the suite runs on two xdist
    workers, and other checkouts run their suites on the same machine. A session fixture that
    changes such a thing (a system file, a fixed port, a shared image) does it inside
    ``with host_lock("<what>"):``, and checks first whether another process already did it.
    The lock is released when the block ends or the process dies.
    """
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", name):
        raise ValueError(f"lock name {name!r}: use lower-case letters, digits and '-'")
    path = Path(tempfile.gettempdir()) / f"learnhub-test-{name}.lock"
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
