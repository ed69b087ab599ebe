"""The Stripe client LearnHub uses, built from the settings in one place."""

from __future__ import annotations

import stripe

from hub.errors import LearnHubError
from hub.settings import Settings


def stripe_client(settings: Settings) -> stripe.StripeClient:
    """A StripeClient for `payments.provider: stripe` (optionally at `payments.stripe_api_base`).

    Raises :class:`LearnHubError` when no secret key is configured.
    """
    key = settings.secret("stripe_secret_key")
    if not key:
        raise LearnHubError(
            "LEARNHUB_STRIPE_SECRET_KEY is not set: Stripe calls need a (test or live) secret key"
        )
    base = settings.payments.stripe_api_base
    return stripe.StripeClient(
        key, max_network_retries=2, base_addresses={"api": base} if base else {}
    )
