"""The grading worker's process: ``python -m hub.grading_worker``.

The Hub starts this as its managed service ``grading-worker`` (:mod:`hub.hubconfig`), and
`learnhub grader worker` (the operator's command) runs the same :func:`run_worker`. The work
itself is :func:`grader.worker.serve`.

Why a module of its own: through `hub.cli` the worker imported every command's libraries
(Stripe, rich, the Hub API client, Docker's, nbgrader) before it looked at a job, 14 s under
load in the test suite; here it imports only settings, logging and the worker, and nbgrader
once a job needs it. And it takes SIGINT and SIGTERM first, before importing anything heavy:
a stop that arrives while it starts (Ctrl-C on `learnhub demo`, which reaches every process of
the terminal) ends it quietly, never as a KeyboardInterrupt traceback half-way through an import.

Only the standard library is imported at module level; keep it so
(tests/test_grading_worker.py checks what importing it loads).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from hub.stop_signals import stop_on_signals

if TYPE_CHECKING:
    from hub.settings import Settings


def run_worker(
    settings: Settings,
    environ: Mapping[str, str],
    *,
    once: bool = False,
    stopping: threading.Event | None = None,
) -> int:
    """Run the grading jobs until stopped (``once``: until none is queued); return the number
    of jobs run. Logs go to stderr as structured lines at ``hub.log_level``."""
    from hub.cli_token import require_cli_token
    from hub.logs import configure_logging

    configure_logging(settings.hub.log_level)
    quiet_nbgrader_apps()
    # As a managed service JupyterHub gives the worker its own token (role
    # learnhub-grading-worker); an operator running it by hand uses the CLI's token.
    token = environ.get("JUPYTERHUB_API_TOKEN") or require_cli_token(settings)

    from grader.worker import serve

    return serve(
        settings,
        token=token,
        poll_seconds=settings.grading.worker.poll_seconds,
        once=once,
        stopping=stopping,
    )


def quiet_nbgrader_apps() -> None:
    """nbgrader's apps log each step at INFO on the `traitlets` logger; a failed step comes
    back as a GradingError with nbgrader's reason, so only that one line is shown."""
    nbgrader_log = logging.getLogger("traitlets")
    nbgrader_log.propagate = False
    if not any(isinstance(h, logging.NullHandler) for h in nbgrader_log.handlers):
        nbgrader_log.addHandler(logging.NullHandler())


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """``python -m hub.grading_worker [--config FILE] [--once]``; returns the exit status:
    0 when stopped (by a signal too), 2 for bad settings."""
    stopping, restore = stop_on_signals()  # first: before the imports below take seconds
    try:
        return _main(argv, environ, stopping)
    finally:
        restore()


def _main(
    argv: Sequence[str] | None, environ: Mapping[str, str] | None, stopping: threading.Event
) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hub.grading_worker",
        description="Run the grading jobs instructors queue from their dashboard "
        "(what `learnhub grader worker` runs; the Hub starts it as the service grading-worker).",
    )
    parser.add_argument("--config", help="settings file (default: LEARNHUB_CONFIG)")
    parser.add_argument("--once", action="store_true", help="run the queued jobs, then exit")
    args = parser.parse_args(argv)
    env = os.environ if environ is None else environ

    from hub.errors import LearnHubError
    from hub.settings import load_settings, settings_from_environment

    try:
        # A managed service of the Hub, given no secret: only its own token (from JupyterHub).
        if args.config:
            settings = load_settings(Path(args.config), env, process="worker")
        else:
            settings = settings_from_environment(
                env, Path.cwd() / "learnhub.yaml", process="worker"
            )
        count = run_worker(settings, env, once=args.once, stopping=stopping)
    except LearnHubError as exc:
        print(f"learnhub: {exc}", file=sys.stderr)
        return 2
    if args.once:
        print(f"ran {count} grading job{'' if count == 1 else 's'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
