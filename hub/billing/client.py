"""The Stripe client LearnHub uses, built from the settings in one place."""

from __future__ import annotations

import requests
import stripe
from requests.adapters import HTTPAdapter
from requests.utils import get_environ_proxies

from hub.errors import LearnHubError
from hub.settings import Settings

#: Stripe's API, where `payments.stripe_api_base` does not point elsewhere.
STRIPE_API = "https://api.stripe.com"
#: Connections kept open to Stripe: one per re-fetch thread
#: (:data:`hub.billing.fulfilment.STRIPE_THREADS`), so none is closed after each call.
POOL_SIZE = 32


def stripe_http_client(base: str | None) -> stripe.RequestsClient:
    """The HTTP client of LearnHub's Stripe calls: the proxy settings read once, here.

    requests, by default, reads the proxy variables and ``~/.netrc`` from the environment again
    on every request (``trust_env``): a fifth of each re-fetch's CPU in the service
    (py-spy, benchmarks/edge.py). The environment's proxy for Stripe's address is read once
    when the client is made (a service restart picks up a change), and every call uses it.
    """
    session = requests.Session()
    session.trust_env = False
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=POOL_SIZE)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    found = get_environ_proxies(base or STRIPE_API)
    proxy: stripe.HTTPClient._Proxy | None = None
    if found.get("http") or found.get("https"):
        proxy = {"http": found.get("http"), "https": found.get("https")}
    return stripe.RequestsClient(session=session, proxy=proxy)


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
        key,
        max_network_retries=2,
        base_addresses={"api": base} if base else {},
        http_client=stripe_http_client(base),
    )
