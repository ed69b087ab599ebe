"""``host:pid``: the process that owns a grading job (the worker that claimed it) or a sandbox
container (the process that started it, and removes it when the run ends).

A job's row and its sandboxes carry the same id, so the worker that finds a dead worker's job
(:func:`grader.worker.recover`) also finds the sandboxes that worker left behind. Standard
library only: the grading worker imports it long before a job needs Docker.
"""

from __future__ import annotations

import os
import socket


def process_owner() -> str:
    """``host:pid`` of this process."""
    return f"{socket.gethostname()}:{os.getpid()}"
