"""What the LearnHub service counts for operators, and who may read it.

:class:`ServiceMetrics` holds the service's Prometheus instruments in a registry of its own
(never ``prometheus_client``'s global one: tests start several services in one process, and
each must count only its own traffic). The parts that do the work are handed the object and
count as they go (the webhook, the event queue, the access sync, the checkout); what lives in
the database (the event queue's depth and age, autograde runs recorded by the CLI) is read when
Prometheus scrapes, by a collector the service registers (``hub.service.monitoring``).

Reading ``/services/learnhub/metrics`` needs a Hub token whose own scopes include
:data:`METRICS_SCOPE`; the Hub's role ``metrics-scraper`` (``hub.hubconfig.apply_services``)
gives it, with JupyterHub's ``read:metrics`` for the Hub's own ``/hub/metrics``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter

if TYPE_CHECKING:
    from hub.access.hub_groups import MembershipChanges

#: The custom scope (JupyterHub ``custom_scopes``) that reads the service's metrics.
METRICS_SCOPE = "custom:learnhub:read-metrics"

#: JupyterHub's own scope for ``/hub/metrics`` (with ``authenticate_prometheus``).
HUB_METRICS_SCOPE = "read:metrics"

#: The Hub service whose ``api_token`` is ``LEARNHUB_METRICS_TOKEN``, and its role.
SCRAPER_SERVICE = "metrics"
SCRAPER_ROLE = "metrics-scraper"

#: ``JupyterHub.custom_scopes`` entry of :data:`METRICS_SCOPE`.
METRICS_CUSTOM_SCOPES = {
    METRICS_SCOPE: {
        "description": "Read the LearnHub service's Prometheus metrics (no user data).",
    },
}

#: Webhook outcomes of a delivery that was refused before it was recorded, by the start of
#: :class:`hub.billing.webhook.WebhookRejected`'s reason.
_REJECTED_OUTCOMES = (
    ("invalid signature", "bad_signature"),
    ("stale timestamp", "stale"),
    ("missing Stripe-Signature", "unsigned"),
    ("no webhook secret", "unconfigured"),
    ("malformed body", "malformed"),
)


def rejected_outcome(reason: str) -> str:
    """The ``outcome`` label of a refused webhook delivery, from the refusal's reason."""
    for start, outcome in _REJECTED_OUTCOMES:
        if reason.startswith(start):
            return outcome
    return "rejected"


class ServiceMetrics:
    """The LearnHub service's counters, in their own :class:`CollectorRegistry`.

    Label values are a small fixed set (outcomes, statuses, reasons): never a user name, a
    course id or an event id, so the number of series stays bounded whatever the traffic.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.webhooks = Counter(
            "learnhub_webhook_deliveries",
            "Stripe webhook deliveries by what the webhook answered: queued, duplicate, "
            "ignored, or why it refused (bad_signature, stale, unsigned, malformed, "
            "too_large, db_error).",
            ["outcome"],
            registry=self.registry,
        )
        self.events = Counter(
            "learnhub_stripe_events_processed",
            "Queued Stripe events processed, by outcome: applied, noop, failed (Stripe has no "
            "such object), error (given up after Stripe's retry window).",
            ["outcome"],
            registry=self.registry,
        )
        self.event_retries = Counter(
            "learnhub_stripe_event_retries",
            "Re-fetches from Stripe that failed and were scheduled again.",
            registry=self.registry,
        )
        self.access_changes = Counter(
            "learnhub_access_changes",
            "Members added to (grant) or removed from (revoke) course groups by the access sync.",
            ["change"],
            registry=self.registry,
        )
        self.access_syncs = Counter(
            "learnhub_access_syncs",
            "Access syncs by outcome: ok, or failed (the Hub API could not be used; the next "
            "sync heals it).",
            ["outcome"],
            registry=self.registry,
        )
        self.checkouts = Counter(
            "learnhub_checkouts",
            "Checkout attempts by outcome: created (sent to Stripe), already_owned, refused, "
            "payment_unavailable (Stripe could not be asked), rate_limited.",
            ["outcome"],
            registry=self.registry,
        )
        self.checkout_returns = Counter(
            "learnhub_checkout_returns",
            "Visits of the checkout success page by the status they found: active, pending, "
            "failed (not paid), unknown (not the visitor's session), unavailable (Stripe could "
            "not be asked).",
            ["status"],
            registry=self.registry,
        )
        # Every label value the code uses is shown from the first scrape (at 0), so a rate()
        # or an alert on it has a series before the first event.
        for outcome in ("queued", "duplicate", "ignored", "bad_signature", "db_error"):
            self.webhooks.labels(outcome)
        for outcome in ("applied", "noop", "failed", "error"):
            self.events.labels(outcome)
        for change in ("grant", "revoke"):
            self.access_changes.labels(change)
        for outcome in ("ok", "failed"):
            self.access_syncs.labels(outcome)
        for outcome in ("created", "already_owned", "refused", "payment_unavailable"):
            self.checkouts.labels(outcome)
        for status in ("active", "pending", "failed"):
            self.checkout_returns.labels(status)

    def count_sync(self, changes: MembershipChanges | None) -> None:
        """Count one access sync: what it added and removed, or None when it failed
        (``on_sync`` of :func:`hub.access.hub_groups.make_access_sync`)."""
        if changes is None:
            self.access_syncs.labels("failed").inc()
            return
        self.access_syncs.labels("ok").inc()
        self.access_changes.labels("grant").inc(sum(map(len, changes.added.values())))
        self.access_changes.labels("revoke").inc(sum(map(len, changes.removed.values())))
