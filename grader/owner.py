"""``host:pid``: the process that owns a grading job (the worker that claimed it) or a sandbox
container (the process that started it, and removes it when the run ends).

A job's row and its sandboxes carry the same id, so the worker that finds a dead worker's job
(:func:`grader.worker.recover`) also finds the sandboxes that worker left behind. Whether that
process still runs is :func:`owner_alive`: a pid is given again to later processes, so a process
that merely has the pid is the owner only if it started before the job was claimed or the
sandbox created. Standard library only: the grading worker imports it long before a job needs
Docker.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

#: How much later than the claim (or the container's creation) the owner's start may seem.
#: The start is the boot time, which /proc/stat gives in whole seconds, plus clock ticks
#: (1/100 s): up to 1 s early or late. A pid given again within 2 s of a claim would need the
#: dead owner to die and the kernel to wrap around every pid in between: not seen.
START_SLACK_SECONDS = 2.0


def process_owner() -> str:
    """``host:pid`` of this process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _boot_time() -> float:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    raise OSError("no btime in /proc/stat")


def process_start(pid: int) -> float | None:
    """When process ``pid`` of this host started (seconds since the epoch); None when no such
    process runs (a zombie, killed but not yet reaped, runs no more)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = _boot_time()
    except OSError:
        return None
    # Field 2, the command's name, may hold spaces and parentheses: count after the last ")".
    # What follows starts at field 3 (the state); field 22 is the start in clock ticks.
    fields = stat.rpartition(")")[2].split()
    if len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def owner_alive(owner: str, since: float | None) -> bool | None:
    """Whether ``owner`` (``host:pid``), which claimed a job or created a sandbox at ``since``
    (seconds since the epoch; None when unknown), still runs. None when it is not a process of
    this host: this host cannot tell.

    Alive means its pid runs a process that started no later than ``since``: a process that
    started afterwards got the pid after the owner had died.
    """
    host, _, pid_text = owner.rpartition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return None
    started = process_start(int(pid_text))
    if started is None:
        return False
    return since is None or started <= since + START_SLACK_SECONDS
