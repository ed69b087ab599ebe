"""What the service's ``/metrics`` and ``/health`` answer, and who may read the metrics.

:class:`Monitor` is built once with the service's context (:func:`hub.service.context.
build_context`); the handlers (``hub.service.probes``) only call it:

- :meth:`Monitor.render_metrics`: the service's counters (:class:`hub.metrics.ServiceMetrics`)
  plus what the database holds, read at scrape time (:class:`DatabaseCollector`): the Stripe
  event queue's depth and the age of its oldest event, and the autograde runs the grading CLI
  recorded (:mod:`hub.autograde_runs`);
- :meth:`Monitor.may_read_metrics`: whether a Hub token carries
  :data:`hub.metrics.METRICS_SCOPE` (asked of the Hub, cached briefly);
- :meth:`Monitor.health`: database, Hub API and event queue, cheap enough for a load balancer
  to ask every few seconds (one answer is shared for :data:`HEALTH_CACHE_SECONDS`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import httpx
import sqlalchemy as sa
from prometheus_client import generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError

from hub.autograde_runs import DURATION_BUCKETS, autograde_figures
from hub.metrics import METRICS_SCOPE, ServiceMetrics
from hub.settings import Settings
from hub.store import Database, StripeEvent, utcnow
from hub.store.repository import QUEUED

log = logging.getLogger("learnhub.service.monitoring")

#: How long one health answer is reused: a load balancer or an anonymous visitor asking in a
#: loop costs at most one database query and one Hub request per this many seconds.
HEALTH_CACHE_SECONDS = 2.0
#: How long the Hub may take to answer the health check's request.
HUB_TIMEOUT_SECONDS = 2.0
#: How long a token's verdict (may read the metrics or not) is reused; a scraper asks every
#: 15 to 60 seconds, so most scrapes cost no Hub request.
TOKEN_CACHE_SECONDS = 60.0
#: Bound of the token cache, so a flood of random tokens cannot grow memory without limit.
MAX_CACHED_TOKENS = 1024


@dataclass(frozen=True)
class QueueState:
    """The Stripe events accepted but not processed yet."""

    depth: int
    #: Seconds since the oldest of them was accepted (0 when none is queued).
    oldest_age_seconds: float


def queue_state(db: Database, now: datetime | None = None) -> QueueState:
    """Count the queued events and age the oldest (blocking; one indexed query)."""
    with db.transaction() as session:
        depth, oldest = session.execute(
            sa.select(sa.func.count(), sa.func.min(StripeEvent.received_at)).where(
                StripeEvent.outcome == QUEUED
            )
        ).one()
    if not depth or oldest is None:
        return QueueState(0, 0.0)
    # min() bypasses the column's type on some backends: naive UTC, as stored.
    if oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=(now or utcnow()).tzinfo)
    age = ((now or utcnow()) - oldest).total_seconds()
    return QueueState(int(depth), max(0.0, age))


class DatabaseCollector(Collector):
    """Figures read from LearnHub's database when Prometheus scrapes (blocking).

    ``learnhub_database_up`` says whether that read worked; when it did not, the other
    figures of this collector are missing from that scrape rather than wrong.
    """

    def __init__(self, db: Database) -> None:
        self.db = db

    def collect(self) -> Iterator[Metric]:
        """Yield the queue and autograde figures."""
        up = GaugeMetricFamily(
            "learnhub_database_up", "Whether the scrape could read LearnHub's database (1 or 0)."
        )
        try:
            queue = queue_state(self.db)
            figures = autograde_figures(self.db)
        except SQLAlchemyError as exc:
            log.warning("metrics: database unreadable", extra={"error": type(exc).__name__})
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield GaugeMetricFamily(
            "learnhub_event_queue_depth",
            "Stripe events accepted (acknowledged to Stripe) and not processed yet.",
            value=queue.depth,
        )
        yield GaugeMetricFamily(
            "learnhub_event_queue_oldest_age_seconds",
            "Seconds since the oldest queued Stripe event was accepted (0 when none is).",
            value=queue.oldest_age_seconds,
        )
        runs = CounterMetricFamily(
            "learnhub_autograde_submissions",
            "Submissions autograded (recorded by `learnhub grader autograde`), by outcome "
            "(ok, limit, error) and reason (the limit hit or the failure).",
            labels=["outcome", "reason"],
        )
        for (outcome, reason), count in sorted(figures.counts.items()):
            runs.add_metric([outcome, reason], count)
        yield runs
        durations = HistogramMetricFamily(
            "learnhub_autograde_duration_seconds",
            "Wall-clock seconds to autograde one submission, by outcome.",
            labels=["outcome"],
        )
        for outcome, (cumulative, count, total) in sorted(figures.durations.items()):
            bounds = [str(bound) for bound in DURATION_BUCKETS]
            buckets = [*zip(bounds, cumulative, strict=True), ("+Inf", count)]
            durations.add_metric([outcome], buckets, total)
        yield durations
        yield CounterMetricFamily(
            "learnhub_sandbox_seconds",
            "Seconds grading sandbox containers ran, all autograded submissions together.",
            value=figures.sandbox_seconds,
        )


class IntakeState(Protocol):
    """What the health check reads of the webhook intake
    (:class:`~hub.billing.intake.WebhookIntake`)."""

    @property
    def pid(self) -> int | None:
        """The intake's process id while it listens, else None."""

    @property
    def starts(self) -> int:
        """How many times it was started."""


class Monitor:
    """The service's metrics, health and metrics-token check, made once per service."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        metrics: ServiceMetrics,
        *,
        hub_api_url: str | None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.metrics = metrics
        #: The Hub's REST API (``.../hub/api``); None when the service has no Hub (tests).
        self.hub_api_url = hub_api_url.rstrip("/") if hub_api_url else None
        metrics.registry.register(DatabaseCollector(db))
        #: How long one health answer is reused (:data:`HEALTH_CACHE_SECONDS`).
        self.health_cache_seconds = HEALTH_CACHE_SECONDS
        self._http = httpx.AsyncClient(timeout=HUB_TIMEOUT_SECONDS)
        self._tokens: dict[str, tuple[float, bool | None]] = {}
        self._health: tuple[float, tuple[int, dict[str, Any]]] | None = None
        self._health_pending: asyncio.Future[tuple[int, dict[str, Any]]] | None = None
        #: The webhook intake process, when ``hub.webhook_port`` runs one (its health counts).
        self.webhook_intake: IntakeState | None = None

    async def aclose(self) -> None:
        """Close the Hub connection pool."""
        await self._http.aclose()

    # -- metrics ------------------------------------------------------------------------------

    async def render_metrics(self) -> bytes:
        """The Prometheus text exposition of everything (database reads off the event loop)."""
        return await asyncio.to_thread(generate_latest, self.metrics.registry)

    async def may_read_metrics(self, token: str) -> bool | None:
        """True when ``token`` carries :data:`METRICS_SCOPE`, False when it is a valid token
        without it, None when the Hub does not know it.

        Raises ``httpx.HTTPError`` when the Hub cannot be asked.
        """
        if self.hub_api_url is None:
            raise httpx.ConnectError("this service has no Hub API to check tokens with")
        # Keyed by a hash so the cache never holds a readable copy of the token.
        key = hashlib.sha256(token.encode()).hexdigest()
        now = time.monotonic()
        cached = self._tokens.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        response = await self._http.get(
            f"{self.hub_api_url}/user", headers={"Authorization": f"token {token}"}
        )
        verdict: bool | None
        if response.status_code in (401, 403, 404):
            verdict = None
        elif response.status_code == 200:
            model = response.json()
            scopes = model.get("scopes") if isinstance(model, dict) else None
            verdict = METRICS_SCOPE in set(scopes or ())
        else:
            raise httpx.HTTPStatusError(
                f"GET /user -> {response.status_code}", request=response.request, response=response
            )
        if len(self._tokens) >= MAX_CACHED_TOKENS:
            self._tokens = {k: v for k, v in self._tokens.items() if v[0] > now}
            if len(self._tokens) >= MAX_CACHED_TOKENS:
                self._tokens.clear()
        self._tokens[key] = (now + TOKEN_CACHE_SECONDS, verdict)
        return verdict

    # -- health -------------------------------------------------------------------------------

    async def health(self) -> tuple[int, dict[str, Any]]:
        """``(200 or 503, body)``: ``ok`` when the database and the Hub answer and no Stripe
        event waits longer than ``monitoring.queue_age_alert_seconds``, else ``degraded``.

        Concurrent callers share one check, and its answer is reused for
        :attr:`health_cache_seconds`.
        """
        now = time.monotonic()
        if self._health is not None and self._health[0] > now:
            return self._health[1]
        if self._health_pending is None or self._health_pending.done():
            self._health_pending = asyncio.ensure_future(self._check_health())
        answer = await asyncio.shield(self._health_pending)
        self._health = (time.monotonic() + self.health_cache_seconds, answer)
        return answer

    async def _check_health(self) -> tuple[int, dict[str, Any]]:
        database, queue = await self._check_database()
        hub = await self._check_hub()
        limit = self.settings.monitoring.queue_age_alert_seconds
        queue_check: dict[str, Any] = {"ok": False}
        if queue is not None:
            queue_check = {
                "ok": queue.oldest_age_seconds <= limit,
                "depth": queue.depth,
                "oldest_age_seconds": round(queue.oldest_age_seconds, 1),
                "alert_after_seconds": limit,
            }
        checks = {"database": database, "hub": hub, "event_queue": queue_check}
        if self.webhook_intake is not None:
            intake = self.webhook_intake
            checks["webhook_intake"] = {"ok": intake.pid is not None, "starts": intake.starts}
        healthy = all(check["ok"] for check in checks.values())
        if not healthy:
            failing = ",".join(name for name, check in checks.items() if not check["ok"])
            log.warning("health degraded", extra={"outcome": "degraded", "failing": failing})
        body = {"status": "ok" if healthy else "degraded", "checks": checks}
        return (200 if healthy else 503), body

    async def _check_database(self) -> tuple[dict[str, Any], QueueState | None]:
        try:
            queue = await asyncio.to_thread(queue_state, self.db)
        except SQLAlchemyError as exc:
            # The exception text may carry the database URL; the answer is public.
            log.warning("health: database unreachable", extra={"error": str(exc)[:200]})
            return {"ok": False, "error": "not reachable"}, None
        return {"ok": True}, queue

    async def _check_hub(self) -> dict[str, Any]:
        if self.hub_api_url is None:
            return {"ok": False, "error": "no Hub API configured"}
        try:
            # JupyterHub's API root answers without a token, and does no database work.
            response = await self._http.get(f"{self.hub_api_url}/")
        except httpx.HTTPError as exc:
            log.warning("health: Hub API unreachable", extra={"error": type(exc).__name__})
            return {"ok": False, "error": "not reachable"}
        if response.status_code != 200:
            return {"ok": False, "error": f"answered {response.status_code}"}
        return {"ok": True}
