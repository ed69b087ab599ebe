"""Facts about this machine that tests and benchmarks ask: free ports, installed programs."""

from __future__ import annotations

import shutil
import socket


def free_port() -> int:
    """A TCP port that is free right now on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def have(binary: str) -> bool:
    """Whether `binary` is on PATH."""
    return shutil.which(binary) is not None
