"""The webhook intake: Stripe's deliveries taken by a process of its own, beside the service.

Why a process: the service is one Python process, one GIL. At 300 webhook events a second,
taking the deliveries (HTTP, the signature, the group-committed record) and processing them
(the Stripe re-fetch, the entitlement transaction, the access sync) needed about a whole core
between them, and acknowledgements and batches waited for each other: the service's threads
waited longer for the GIL than they ran (docs/benchmarks.md, "The webhook intake"). With
``hub.webhook_port`` set, the service starts this process, and the edge passes Stripe's path
to it:

    nginx --(/services/learnhub/stripe/webhook)--> intake --(queued events, stdout)--> service

The intake answers Stripe exactly as the service's own handler does
(:func:`hub.billing.webhook.receive`: the same checks, the same group-committed record before
the 2xx, the same answers). It tells the service what each delivery came to, one JSON line on
its stdout: ``{"outcome": ...}``, with ``"event"`` when the event was recorded as queued. The
service hands queued events to its :class:`~hub.billing.events.EventQueue` and counts the
outcome in its metrics (:class:`WebhookIntake`). A line that never arrives loses nothing: the
event is in the database as queued, and the service reads queued events back when it restarts
the intake and before every reconcile.

The intake needs only the service's database and the webhook secrets; it exits when its stdin
closes (the service is gone) or on SIGTERM, and the service restarts it when it dies.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tornado import web

from hub.billing.events import EventQueue, Recorder
from hub.billing.webhook import bounded_body, receive, split_secrets
from hub.errors import LearnHubError
from hub.metrics import ServiceMetrics

log = logging.getLogger("learnhub.billing.intake")

#: The first line the intake writes once it listens.
READY = {"ready": True}
#: Longest line the service reads: a delivery's body is at most 1 MiB (webhook.MAX_BODY_BYTES).
LINE_LIMIT = 4 * 1024 * 1024
#: Seconds the service waits for a new intake to listen.
START_TIMEOUT = 60.0

Report = Callable[[str, dict[str, Any] | None], None]


@bounded_body  # over 1 MB: 413 before the body is read or any signature work
class IntakeHandler(web.RequestHandler):
    """``POST <prefix>stripe/webhook`` in the intake: verify, record, answer, report."""

    outcome = ""
    event: dict[str, Any] | None = None

    def initialize(self, recorder: Recorder, secrets: Sequence[str], report: Report) -> None:
        """The intake's recorder, the webhook secrets, and where outcomes are reported."""
        self.recorder = recorder
        self.secrets = secrets
        self.report = report

    async def post(self) -> None:
        """What the service's webhook handler does (:func:`receive`)."""
        delivery = await receive(
            self.request.body,
            self.request.headers.get("Stripe-Signature"),
            self.secrets,
            self.recorder.accept,
        )
        self.outcome, self.event = delivery.outcome, delivery.event
        self.set_status(delivery.status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(delivery.body))

    def on_finish(self) -> None:
        """Report the delivery once, whichever way it ended (413 is answered before ``post``)."""
        outcome = self.outcome or ("too_large" if self.get_status() == 413 else "error")
        self.report(outcome, self.event)


class NotFound(web.RequestHandler):
    """Any other path: a JSON 404 that says what this listener is for."""

    def prepare(self) -> None:
        """Every method and path."""
        self.set_status(404)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": "LearnHub's webhook intake takes only Stripe's webhook"}))


def _write_line(record: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(record, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def _report(outcome: str, event: dict[str, Any] | None) -> None:
    _write_line({"outcome": outcome} if event is None else {"outcome": outcome, "event": event})


async def serve(argv: list[str] | None = None) -> None:
    """The intake process: listen, take deliveries, until stdin closes or SIGTERM."""
    from hub.logs import configure_logging
    from hub.settings import settings_from_environment
    from hub.store import Database

    parser = argparse.ArgumentParser(prog="python -m hub.billing.intake")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True, help="the webhook's path, e.g. /services/…")
    args = parser.parse_args(argv)
    os.umask(0o077)
    settings = settings_from_environment(dict(os.environ), Path("learnhub.yaml"), process="service")
    configure_logging(settings.hub.log_level)
    db = Database(settings.learnhub_db_url)
    recorder = Recorder(db)
    secrets = split_secrets(settings.secret("stripe_webhook_secrets"))
    app = web.Application(
        [(args.path, IntakeHandler, {"recorder": recorder, "secrets": secrets, "report": _report})],
        default_handler_class=NotFound,
    )
    try:
        server = app.listen(args.port, args.host)
    except OSError as exc:
        log.error(
            "webhook intake cannot listen",
            extra={"address": f"{args.host}:{args.port}", "error": str(exc), "outcome": "failed"},
        )
        raise SystemExit(2) from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    # The service holds the other end of stdin: when it is gone, so is the intake.
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    watcher = asyncio.ensure_future(stdin.read())
    watcher.add_done_callback(lambda _: stop.set())
    _write_line(READY)
    log.info("webhook intake listening", extra={"address": f"{args.host}:{args.port}"})
    await stop.wait()
    server.stop()
    await server.close_all_connections()
    recorder.close()
    db.dispose()
    log.info("webhook intake stopped", extra={"outcome": "stopped"})


class WebhookIntake:
    """The service's side: start the intake, take what it queued, count, restart it if it dies.

    ``command`` is how to start it (``python -m hub.billing.intake`` with its arguments); it
    inherits ``env`` (the service's settings and secrets).
    """

    #: Seconds before each restart of an intake that died, the last one repeated.
    RESTART_DELAYS: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0, 30.0)

    def __init__(
        self,
        events: EventQueue,
        metrics: ServiceMetrics,
        *,
        host: str,
        port: int,
        path: str,
        env: dict[str, str],
        restart_delays: Sequence[float] | None = None,
    ) -> None:
        self.events = events
        self.metrics = metrics
        self.port = port
        self.address = f"{host}:{port}"
        self.command = [sys.executable, "-m", "hub.billing.intake"]
        self.command += ["--host", host, "--port", str(port), "--path", path]
        self.env = env
        self.restart_delays = tuple(restart_delays or self.RESTART_DELAYS)
        #: How many times the intake was started (1 after :meth:`start`).
        self.starts = 0
        self._process: asyncio.subprocess.Process | None = None
        self._runner: asyncio.Task[None] | None = None
        self._stopping = False
        self._listening = False

    @property
    def pid(self) -> int | None:
        """The process id of the intake while it listens, or None."""
        process = self._process
        listening = self._listening and process is not None and process.returncode is None
        return process.pid if listening and process is not None else None

    async def start(self) -> None:
        """Start the intake and wait until it listens.

        Raises :class:`LearnHubError` (with its exit status; its own log line says why, e.g.
        the port is taken) when it does not come up.
        """
        await self._spawn()
        self._runner = asyncio.ensure_future(self._run())

    async def _spawn(self) -> None:
        self.starts += 1
        process = await asyncio.create_subprocess_exec(
            *self.command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=self.env,
            limit=LINE_LIMIT,
        )
        self._process = process
        assert process.stdout is not None
        try:
            first = await asyncio.wait_for(process.stdout.readline(), START_TIMEOUT)
        except TimeoutError:
            first = b""
        if first.strip() != json.dumps(READY, separators=(",", ":")).encode():
            if process.returncode is None:
                process.kill()
            status = await process.wait()
            raise LearnHubError(
                f"the webhook intake did not start on {self.address} (exit status {status}); "
                "its log line above says why. Free the port, or change hub.webhook_port."
            )
        self._listening = True
        log.info("webhook intake started", extra={"address": self.address, "pid": process.pid})

    async def _run(self) -> None:
        attempt = 0
        while True:
            process = self._process
            assert process is not None and process.stdout is not None
            await self._read(process.stdout)
            status = await process.wait()
            self._listening = False
            if self._stopping:
                return
            log.error(
                "webhook intake stopped unexpectedly; restarting it",
                extra={"address": self.address, "status": status, "outcome": "restart"},
            )
            # What it recorded and did not report is queued in the database.
            await self.events.recover()
            while not self._stopping:
                await asyncio.sleep(self.restart_delays[min(attempt, len(self.restart_delays) - 1)])
                attempt += 1
                try:
                    await self._spawn()
                except LearnHubError as exc:
                    log.error(str(exc), extra={"outcome": "retry"})
                    continue
                attempt = 0
                break

    async def _read(self, stdout: asyncio.StreamReader) -> None:
        while line := await stdout.readline():
            try:
                record = json.loads(line)
                outcome = str(record["outcome"])
            except (ValueError, KeyError, TypeError):
                log.warning("webhook intake wrote an unreadable line", extra={"bytes": len(line)})
                continue
            self.metrics.webhooks.labels(outcome).inc()
            event = record.get("event")
            if isinstance(event, dict):
                self.events.take(event)

    async def aclose(self) -> None:
        """Stop the intake: close its stdin, then SIGTERM, then SIGKILL."""
        self._stopping = True
        process = self._process
        if process is not None and process.returncode is None:
            if process.stdin is not None:
                process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.terminate()
                try:
                    await asyncio.wait_for(process.wait(), 5)
                except TimeoutError:
                    process.kill()
                    await process.wait()
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)


if __name__ == "__main__":
    asyncio.run(serve())
