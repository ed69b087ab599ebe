"""SIGINT and SIGTERM as an event to check, for processes that must stop only where it is safe.

Standard library only: :mod:`hub.grading_worker` installs it before its heavy imports.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any

#: The signals that stop a LearnHub process run beside the Hub: JupyterHub stops a managed
#: service with SIGINT, then SIGTERM (then SIGKILL); a terminal's Ctrl-C is SIGINT; systemd and
#: Docker send SIGTERM.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def stop_on_signals() -> tuple[threading.Event, Callable[[], None]]:
    """Make SIGINT and SIGTERM set the returned event; the second item restores the previous
    handlers.

    The handler only sets the event: it never raises into whatever the process is doing (a
    database call half-answered, an import), so the process decides where it is safe to stop.
    """
    stopping = threading.Event()

    def stop(_signum: int, _frame: Any) -> None:
        stopping.set()

    previous = {sig: signal.signal(sig, stop) for sig in STOP_SIGNALS}

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return stopping, restore
