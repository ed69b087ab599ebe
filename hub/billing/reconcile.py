"""Reconciliation: catch up on events we missed and re-check subscriptions, then sync access.

Webhooks can be lost (the service was down, a deploy, a network split). Stripe keeps events for
30 days; this lists the recent ones, processes those not recorded yet (the normal exactly-once
path), re-reads every subscription we still consider live, and finally runs the access sync, so
the Hub's groups match the database even if earlier syncs failed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import stripe

from hub.billing.fulfilment import Billing, FulfilmentError
from hub.store import repository as repo

log = logging.getLogger("learnhub.billing.reconcile")

#: Stripe keeps events for 30 days.
DEFAULT_LOOKBACK_SECONDS = 3 * 24 * 3600


@dataclass
class ReconcileReport:
    """What one reconciliation did."""

    events_seen: int = 0
    events_applied: list[str] = field(default_factory=list)
    events_failed: list[str] = field(default_factory=list)
    subscriptions_checked: int = 0
    subscriptions_changed: list[str] = field(default_factory=list)
    synced: bool = False


def _list_events(client: stripe.StripeClient, since: int) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    page = client.v1.events.list({"created": {"gte": since}, "limit": 100})
    for event in page.auto_paging_iter():
        events.append(event.to_dict())
    return events


async def reconcile(
    billing: Billing, *, lookback_seconds: int = DEFAULT_LOOKBACK_SECONDS
) -> ReconcileReport:
    """Apply missed events, refresh live subscriptions, then run the access sync.

    Raises :class:`hub.errors.HubAPIError` if the final sync cannot reach the Hub (callers that
    run periodically log it and try again next time).
    """
    report = ReconcileReport()
    since = int(time.time()) - lookback_seconds
    try:
        events = await asyncio.to_thread(_list_events, billing.client, since)
    except stripe.StripeError as exc:
        raise FulfilmentError(f"Stripe list events failed: {exc}") from exc
    # Oldest first; the handlers re-fetch objects anyway, so order only matters for the log.
    events.sort(key=lambda e: int(e.get("created", 0)))
    report.events_seen = len(events)

    def recorded() -> set[str]:
        with billing.db.transaction() as session:
            return repo.recorded_event_ids(session, [str(e["id"]) for e in events])

    done = await asyncio.to_thread(recorded)
    for event in events:
        if str(event["id"]) in done:
            continue
        try:
            result = await billing.handle_event(event)
        except FulfilmentError:
            report.events_failed.append(str(event["id"]))
            continue
        if result.outcome != "duplicate":
            report.events_applied.append(str(event["id"]))

    def live_subscriptions() -> list[str]:
        with billing.db.transaction() as session:
            return repo.active_subscription_ids(session)

    for sub_id in await asyncio.to_thread(live_subscriptions):
        report.subscriptions_checked += 1
        try:
            result = await billing.refresh_subscription(sub_id)
        except FulfilmentError:
            log.warning("subscription refresh failed", extra={"subscription": sub_id})
            continue
        if result.changed:
            report.subscriptions_changed.append(sub_id)
    await billing.sync_access()
    report.synced = True
    log.info(
        "reconciled",
        extra={
            "events_seen": report.events_seen,
            "events_applied": len(report.events_applied),
            "subscriptions_changed": len(report.subscriptions_changed),
            "outcome": "ok",
        },
    )
    return report
