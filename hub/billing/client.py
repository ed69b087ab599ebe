"""The Stripe client LearnHub uses, built from the settings in one place.

Blocking calls (the CLI's, and the service's few in threads) go through requests; awaited calls
(``raw_request_async``, ``*_async`` methods: every re-fetch of a webhook's object) go through
aiohttp on the caller's event loop. Both verify Stripe's certificate against the stripe library's
CA bundle and use the same proxy.
"""

from __future__ import annotations

import ssl
import textwrap
from typing import Any, NoReturn
from urllib.parse import urlsplit

import aiohttp
import requests
import stripe
from requests.adapters import HTTPAdapter
from requests.utils import get_environ_proxies

from hub.errors import LearnHubError
from hub.settings import Settings

#: Stripe's API, where `payments.stripe_api_base` does not point elsewhere.
STRIPE_API = "https://api.stripe.com"
#: Connections one service keeps open to Stripe, and so its Stripe requests in flight at once.
#: Stripe answers in ~0.1-0.2 s over the internet: 32 in flight re-fetch ~200 objects/s.
POOL_SIZE = 32
#: Seconds for one Stripe request (the stripe library's own default), and to connect.
TIMEOUT_SECONDS = 80
CONNECT_SECONDS = 30


class AsyncStripeHTTP(stripe.AIOHTTPClient):
    """The stripe library's aiohttp client, with LearnHub's pool, proxy and error handling.

    Why aiohttp: a webhook's re-fetch took 0.83 ms of CPU through requests on a thread and
    0.25 ms through aiohttp on the event loop (benchmarks/stripe_client.py), and the service's
    Stripe re-fetches were half its CPU at 300 events/s (py-spy, benchmarks/edge.py).

    The session is made on first use, on the loop that awaits it, and must be closed on that
    loop (:meth:`close_async`). Errors are told apart as the library's requests client does: a
    certificate that cannot be verified is not retried; a refused connection or a timeout is.
    """

    def __init__(self, proxy: str | None = None) -> None:
        super().__init__(
            timeout=aiohttp.ClientTimeout(total=TIMEOUT_SECONDS, connect=CONNECT_SECONDS),
            proxy=proxy,
        )
        self._pool: aiohttp.ClientSession | None = None

    @property
    def _session(self) -> aiohttp.ClientSession:
        if self._pool is None:
            context = ssl.create_default_context(cafile=stripe.ca_bundle_path)
            connector = aiohttp.TCPConnector(ssl=context, limit=POOL_SIZE)
            # trust_env=False: the proxy was read once, from the environment, by
            # stripe_http_client; no ~/.netrc or proxy variables are read per request.
            self._pool = aiohttp.ClientSession(connector=connector, trust_env=False)
        return self._pool

    async def close_async(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    def _handle_request_error(self, e: Exception) -> NoReturn:
        if isinstance(e, aiohttp.ClientSSLError):
            msg = "Could not verify Stripe's SSL certificate: is the network intercepting it?"
            retry = False
        elif isinstance(e, (aiohttp.ClientConnectionError, TimeoutError)):
            msg = "Unexpected error communicating with Stripe (the request may be retried)."
            retry = True
        else:
            msg = "Unexpected error communicating with Stripe."
            retry = False
        detail = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        message = textwrap.fill(msg) + f"\n\n(Network error: {detail})"
        raise stripe.APIConnectionError(  # type: ignore[no-untyped-call]
            message, should_retry=retry
        ) from e


class StripeHTTP(stripe.RequestsClient):
    """requests for blocking calls, :class:`AsyncStripeHTTP` for awaited ones."""

    def __init__(self, session: requests.Session, proxy: str | None) -> None:
        self.awaited = AsyncStripeHTTP(proxy)
        super().__init__(
            session=session,
            proxy={"http": proxy, "https": proxy} if proxy else None,
            async_fallback_client=self.awaited,
        )

    async def close_async(self) -> None:
        await self.awaited.close_async()


def stripe_http_client(base: str | None) -> StripeHTTP:
    """The HTTP client of LearnHub's Stripe calls: the proxy settings read once, here.

    requests, by default, reads the proxy variables and ``~/.netrc`` from the environment again
    on every request (``trust_env``): a fifth of each re-fetch's CPU in the service
    (py-spy, benchmarks/edge.py). The environment's proxy for Stripe's address is read once
    when the client is made (a service restart picks up a change), and every call uses it.
    """
    address = base or STRIPE_API
    session = requests.Session()
    session.trust_env = False
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=POOL_SIZE)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    proxy = get_environ_proxies(address).get(urlsplit(address).scheme)
    return StripeHTTP(session, proxy)


class StripeAPI(stripe.StripeClient):
    """A StripeClient that owns its HTTP client, so whoever holds it can close it."""

    def __init__(
        self, api_key: str, base: str | None = None, *, max_network_retries: int = 2
    ) -> None:
        self.http = stripe_http_client(base)
        options: dict[str, Any] = {"base_addresses": {"api": base}} if base else {}
        super().__init__(
            api_key, max_network_retries=max_network_retries, http_client=self.http, **options
        )

    async def aclose(self) -> None:
        """Close the connections of awaited calls (on the loop that made them)."""
        await self.http.close_async()


def stripe_client(settings: Settings) -> StripeAPI:
    """A StripeClient for `payments.provider: stripe` (optionally at `payments.stripe_api_base`).

    Raises :class:`LearnHubError` when no secret key is configured.
    """
    key = settings.secret("stripe_secret_key")
    if not key:
        raise LearnHubError(
            "LEARNHUB_STRIPE_SECRET_KEY is not set: Stripe calls need a (test or live) secret key"
        )
    return StripeAPI(key, settings.payments.stripe_api_base)
