"""Stripe billing: checkout, webhook verification, fulfilment, reconciliation."""

from hub.billing.fulfilment import Billing, FulfilmentError, FulfilmentResult, SyncAccess
from hub.billing.webhook import WebhookRejected, split_secrets, verify_event

__all__ = [
    "Billing",
    "FulfilmentError",
    "FulfilmentResult",
    "SyncAccess",
    "WebhookRejected",
    "split_secrets",
    "verify_event",
]
