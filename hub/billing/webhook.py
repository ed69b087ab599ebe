"""Verification of Stripe webhook deliveries: the raw body, every configured secret."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import stripe

from hub.errors import LearnHubError

#: Stripe's own default: a signed timestamp older than this is a replay.
TOLERANCE_SECONDS = 300


class WebhookRejected(LearnHubError):
    """A delivery that must not be processed; ``reason`` is safe to return to the sender."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def split_secrets(value: str | None) -> list[str]:
    """``whsec_a,whsec_b`` -> ``["whsec_a", "whsec_b"]`` (several secrets during rotation)."""
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def verify_event(
    payload: bytes,
    signature_header: str | None,
    secrets: Sequence[str],
    *,
    tolerance: int = TOLERANCE_SECONDS,
) -> dict[str, Any]:
    """Check ``signature_header`` over the raw ``payload`` with each secret; return the event.

    Raises :class:`WebhookRejected` for a missing secret or header, a signature no secret
    matches, a stale timestamp, or a body that is not a Stripe event. There is no way to skip
    the check: with no secret configured every delivery is rejected.
    """
    if not secrets:
        raise WebhookRejected("no webhook secret is configured; refusing unverifiable events")
    if not signature_header:
        raise WebhookRejected("missing Stripe-Signature header")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise WebhookRejected("malformed body: not UTF-8") from None
    stale = False
    for secret in secrets:
        try:
            stripe.WebhookSignature.verify_header(text, signature_header, secret, tolerance)
        except stripe.SignatureVerificationError as exc:
            # verify_header checks the signature before the timestamp, so "tolerance" in the
            # message means this secret signed it, but too long ago (a replay).
            stale = stale or "tolerance" in str(exc)
            continue
        break
    else:
        if stale:
            raise WebhookRejected(f"stale timestamp: older than {tolerance} seconds")
        raise WebhookRejected("invalid signature")
    try:
        event = json.loads(text)
    except json.JSONDecodeError as exc:
        raise WebhookRejected(f"malformed body: not JSON ({exc.msg})") from None
    if (
        not isinstance(event, dict)
        or not isinstance(event.get("id"), str)
        or not isinstance(event.get("type"), str)
        or not isinstance(event.get("data"), dict)
        or not isinstance(event["data"].get("object"), dict)
    ):
        raise WebhookRejected("malformed body: not a Stripe event (id, type, data.object)")
    return event
