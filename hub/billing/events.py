"""The durable queue between the Stripe webhook and fulfilment.

Stripe wants a quick 2xx and redelivers what it does not get. So the webhook verifies the
signature, records the event in the database (outcome ``queued``) and only then answers; the
work (re-fetching from Stripe, the entitlement change recorded with the event, the access sync)
happens here, in batches:

* Acceptance is group-committed: deliveries that arrive together share one transaction, and no
  delivery is acknowledged before the transaction holding it has committed. An event type
  LearnHub does not use is recorded as ``ignored`` right away.
* The worker takes what is queued (up to ``max_batch`` events; an event that finds it idle at
  once, those that arrive while it works in batches at most every ``batch_interval``),
  re-fetches their objects from Stripe concurrently, then applies every entitlement change and
  records every event's outcome in one transaction
  (:meth:`hub.billing.fulfilment.Billing.apply_batch`, exactly once through
  :func:`hub.store.repository.claim_events`). An access sync follows, while the next batch is
  already being fetched. While events keep coming, syncs start at most every
  ``sync_interval``, each for every batch committed since the previous one started; a lone
  event's change is synced at once.
* An event whose re-fetch fails stays queued, with the error text, and is tried again after
  1 s, 2 s, 4 s ... at most 5 minutes apart, until Stripe's own 3-day retry window is over; then
  it is recorded as ``error`` (``learnhub reconcile`` can still replay it). Except when Stripe
  answers 404 ``resource_missing``: that object will never appear, so the event is recorded
  once as ``failed``, with the reason, and not retried.
* On start, and before every periodic reconcile, queued events are read back from the database,
  so a crash or restart loses nothing that was acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from hub.billing.fulfilment import (
    HANDLED_EVENTS,
    Billing,
    FulfilmentError,
    FulfilmentResult,
    StripeObjectMissing,
)
from hub.entitlements import only_adds_access
from hub.metrics import ServiceMetrics
from hub.store import Database, utcnow
from hub.store import repository as repo
from hub.store.repository import EntitlementUpdate

log = logging.getLogger("learnhub.billing.events")

#: Stripe retries a webhook for three days; an event still failing after that is given up.
GIVE_UP_SECONDS = 3 * 24 * 3600


class Recorder:
    """Group-committed acceptance: verified events recorded before Stripe gets its 2xx.

    Deliveries that arrive while a transaction commits share the next one, and none is
    answered before the transaction holding it has committed. Used by the service's
    :class:`EventQueue` and by the webhook intake process (:mod:`hub.billing.intake`).
    """

    def __init__(
        self, db: Database, on_queued: Callable[[dict[str, Any]], object] | None = None
    ) -> None:
        self.db = db
        #: Called with each event recorded as ``queued``, before its delivery is answered.
        self.on_queued = on_queued
        self._incoming: list[tuple[dict[str, Any], asyncio.Future[str]]] = []
        self._recorder: asyncio.Task[None] | None = None
        # Acceptance commits on a thread of its own: on the default executor an acknowledgement
        # waited behind a batch's database reads (one per event, up to max_batch at once), and
        # webhooks were answered seconds late under load (benchmarks/edge.py).
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="webhook-accept")

    def idle(self) -> bool:
        """Nothing is waiting to be recorded or being recorded."""
        recording = self._recorder is not None and not self._recorder.done()
        return not (self._incoming or recording)

    async def accept(self, event: dict[str, Any]) -> str:
        """Record a verified event; return ``queued``, ``ignored`` or ``duplicate``.

        Returns only once the event is committed, so an acknowledged event survives a crash.
        Raises ``SQLAlchemyError`` when the database cannot record it (Stripe should retry).
        """
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._incoming.append((event, future))
        if self._recorder is None or self._recorder.done():
            self._recorder = asyncio.ensure_future(self._record_incoming())
        return await future

    async def _record_incoming(self) -> None:
        # One transaction for everything that arrived while the previous one was committing.
        while self._incoming:
            group, self._incoming = self._incoming, []
            try:
                statuses = await asyncio.get_running_loop().run_in_executor(
                    self._thread, self._record, [e for e, _ in group]
                )
            except Exception as exc:  # handed to each waiting delivery, which answers 5xx
                for _, future in group:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (event, future), status in zip(group, statuses, strict=True):
                if status == repo.QUEUED and self.on_queued is not None:
                    self.on_queued(event)
                if not future.done():
                    future.set_result(status)

    def _record(self, events: list[dict[str, Any]]) -> list[str]:
        # Retried when another process recorded one of these ids first; the retry sees it.
        return self.db.transact_retrying(
            lambda session: repo.accept_events(session, events, HANDLED_EVENTS.__contains__)
        )

    def close(self) -> None:
        """Let the recording thread go (after the last delivery)."""
        self._thread.shutdown(wait=False)


class EventQueue:
    """Verified Stripe events: recorded before the 2xx, then processed in batches."""

    def __init__(
        self,
        billing: Billing,
        *,
        max_batch: int = 200,
        batch_interval: float = 0.05,
        sync_interval: float = 0.1,
        retry_initial: float = 1.0,
        retry_max: float = 300.0,
        give_up_seconds: float = GIVE_UP_SECONDS,
        clock: Callable[[], float] = time.time,
        metrics: ServiceMetrics | None = None,
    ) -> None:
        self.billing = billing
        #: Counts processed events and retries (the service's ``/metrics``), when given.
        self.metrics = metrics
        self.max_batch = max_batch
        self.batch_interval = batch_interval
        self.sync_interval = sync_interval
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.give_up_seconds = give_up_seconds
        self.clock = clock
        self.recorder = Recorder(billing.db, on_queued=self._enqueue)
        self._ready: deque[dict[str, Any]] = deque()
        #: Ids held in memory: ready, in the current batch, or waiting for a retry.
        self._held: set[str] = set()
        self._attempts: dict[str, int] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._busy = False
        self._tasks: set[asyncio.Task[None]] = set()
        #: Users whose committed changes wait for the next access sync.
        self._to_sync: set[str] = set()
        #: Some of those changes may take access away: the next sync reads every group.
        self._sync_whole = False
        self._syncer: asyncio.Task[None] | None = None
        self._last_sync_start = float("-inf")
        #: The changes waiting for a sync came from a batch that found the queue idle.
        self._sync_at_once = False
        #: Set whenever some work finished, for :meth:`join` to look again.
        self._settled = asyncio.Event()

    # -- accepting ----------------------------------------------------------------------------

    async def accept(self, event: dict[str, Any]) -> str:
        """Record a verified event; return ``queued``, ``ignored`` or ``duplicate``.

        Returns only once the event is committed, so an acknowledged event survives a crash.
        Raises ``SQLAlchemyError`` when the database cannot record it (Stripe should retry).
        """
        self._ensure_worker()
        try:
            return await self.recorder.accept(event)
        finally:
            self._settled.set()

    def take(self, event: dict[str, Any]) -> bool:
        """Process an event another process recorded as queued (the webhook intake).

        False when it is already held (in memory, in a batch, or waiting for a retry).
        """
        self._ensure_worker()
        return self._enqueue(event)

    # -- the worker ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Start processing, beginning with the events a previous run left queued."""
        self._ensure_worker()
        await self.recover()

    async def recover(self) -> int:
        """Queue again what the database holds as queued and memory does not; return how many."""

        def queued() -> list[dict[str, Any]]:
            with self.billing.db.transaction() as session:
                return repo.queued_events(session)

        added = sum(self._enqueue(event) for event in await asyncio.to_thread(queued))
        if added:
            log.info("queued stripe events recovered", extra={"events": added, "outcome": "ok"})
        return added

    def _ensure_worker(self) -> None:
        if self._worker is None or self._worker.done():
            self._worker = asyncio.ensure_future(self._work())

    def _enqueue(self, event: dict[str, Any]) -> bool:
        event_id = str(event["id"])
        if event_id in self._held:
            return False
        self._held.add(event_id)
        self._ready.append(event)
        self._wake.set()
        return True

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            last_start = float("-inf")  # found idle: the first batch goes at once
            from_idle = True
            while self._ready:
                # Events that arrived while a batch was processed: batches start at most every
                # batch_interval, so each carries more events and their transaction, access
                # sync and Hub calls are shared by more of them.
                wait = last_start + self.batch_interval - loop.time()
                if wait > 0 and len(self._ready) < self.max_batch:
                    await asyncio.sleep(wait)
                last_start = loop.time()
                size = min(self.max_batch, len(self._ready))
                batch = [self._ready.popleft() for _ in range(size)]
                self._busy = True
                try:
                    await self._process(batch, from_idle=from_idle)
                except Exception:
                    log.exception("stripe event batch failed; retrying", extra={"events": size})
                    for event in batch:
                        self._retry_later(event, "batch failed")
                finally:
                    self._busy = False
                    self._settled.set()
                    from_idle = False

    async def _process(self, batch: list[dict[str, Any]], *, from_idle: bool = False) -> None:
        results = await self.billing.updates_for_events(batch)
        decided: list[tuple[dict[str, Any], FulfilmentResult]] = []
        failed: list[tuple[dict[str, Any], str]] = []
        for event, result in zip(batch, results, strict=True):
            if isinstance(result, FulfilmentResult):
                decided.append((event, result))
            elif isinstance(result, StripeObjectMissing):
                # Asking again will not make the object appear: recorded once, as failed.
                log.warning(
                    "stripe event refers to an object Stripe does not have; not retried",
                    extra={"event": event["id"], "type": event.get("type"), "outcome": "failed"},
                )
                decided.append((event, FulfilmentResult("failed", str(result))))
            elif isinstance(result, FulfilmentError):
                failed.append((event, str(result)))
            elif isinstance(result, Exception):
                # Not Stripe being unreachable: a bug, or an object of an unexpected shape.
                log.error(
                    "stripe event could not be decided",
                    exc_info=result,
                    extra={"event": event["id"], "type": event.get("type"), "outcome": "retry"},
                )
                failed.append((event, f"{type(result).__name__}: {result}"))
            else:
                raise result
        outcomes = await asyncio.to_thread(self.billing.apply_batch, decided, failed)
        changed: set[str] = set()
        for event, result in decided:
            outcome, did_change = outcomes[str(event["id"])]
            self._forget(str(event["id"]))
            if self.metrics is not None:
                self.metrics.events.labels(outcome).inc()
            self.billing.log_outcome(event, result, outcome)
            if did_change:
                changed.update(update.username for update in result.updates)
                if not all(self._only_adds(update) for update in result.updates):
                    self._sync_whole = True
        for event, error in failed:
            log.warning(
                "stripe event failed; will retry",
                extra={"event": event["id"], "type": event.get("type"), "outcome": "retry"},
            )
            self._retry_later(event, error)
        if changed:
            # Not awaited: the next batch is fetched meanwhile.
            self._to_sync.update(changed)
            self._sync_at_once = self._sync_at_once or from_idle
            if self._syncer is None or self._syncer.done():
                self._syncer = self._track(self._sync_changes())

    async def _sync_changes(self) -> None:
        # Each sync reads every group and entitlement (work that grows with the members), so
        # while events keep coming syncs start at most every sync_interval, each for every
        # batch committed since the previous one started. The changes of a batch that found
        # the queue idle (a lone purchase) are synced at once.
        loop = asyncio.get_running_loop()
        while self._to_sync:
            wait = self._last_sync_start + self.sync_interval - loop.time()
            if wait > 0 and not self._sync_at_once:
                await asyncio.sleep(wait)
            users, self._to_sync = self._to_sync, set()
            whole, self._sync_whole = self._sync_whole, False
            self._sync_at_once = False
            self._last_sync_start = loop.time()
            # Purchases only add their buyers to groups: no need to read every group and
            # entitlement, which grows with the members (the Hub's busiest work in a burst).
            await self.billing.sync(*sorted(users), only_adds=not whole)

    def _only_adds(self, update: EntitlementUpdate) -> bool:
        grace = timedelta(days=self.billing.settings.payments.grace_period_days)
        return only_adds_access(update, now=utcnow(), grace=grace)

    def _forget(self, event_id: str) -> None:
        self._held.discard(event_id)
        self._attempts.pop(event_id, None)
        timer = self._timers.pop(event_id, None)
        if timer is not None:
            timer.cancel()

    def _track(self, coroutine: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._settled.set()

    def _retry_later(self, event: dict[str, Any], error: str) -> None:
        event_id = str(event["id"])
        attempts = self._attempts.get(event_id, 0) + 1
        self._attempts[event_id] = attempts
        if self.clock() - int(event.get("created", 0)) > self.give_up_seconds:
            self._track(self._give_up(event, error))
            return
        if self.metrics is not None:
            self.metrics.event_retries.inc()
        delay = min(self.retry_max, self.retry_initial * 2 ** (attempts - 1))
        self._timers[event_id] = asyncio.get_running_loop().call_later(
            delay, self._retry_now, event
        )

    def _retry_now(self, event: dict[str, Any]) -> None:
        self._timers.pop(str(event["id"]), None)
        self._ready.append(event)
        self._wake.set()

    async def _give_up(self, event: dict[str, Any], error: str) -> None:
        event_id = str(event["id"])

        def record() -> None:
            with self.billing.db.transaction() as session:
                if event_id in repo.claim_events(session, [event_id]):
                    repo.finish_events(session, {event_id: ("error", error)})

        await asyncio.to_thread(record)
        self._forget(event_id)
        if self.metrics is not None:
            self.metrics.events.labels("error").inc()
        log.error(
            "stripe event given up after Stripe's retry window",
            extra={"event": event_id, "type": event.get("type"), "outcome": "error"},
        )

    # -- observing and stopping ---------------------------------------------------------------

    def idle(self) -> bool:
        """Nothing is being recorded, processed or synced (retries may still be waiting)."""
        recording = not self.recorder.idle()
        return not (recording or self._ready or self._busy or self._tasks)

    @property
    def waiting_for_retry(self) -> int:
        """How many events wait for their next attempt."""
        return len(self._timers)

    async def join(self) -> None:
        """Wait until :meth:`idle`: every accepted event processed and its sync done."""
        while not self.idle():
            self._settled.clear()
            await self._settled.wait()

    async def aclose(self) -> None:
        """Stop working; what is still queued stays in the database for the next start."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        tasks = [t for t in (self._worker, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._worker = None
