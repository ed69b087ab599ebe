"""Where LearnHub's parts reach each other: the Hub API, the service, the exchange.

Derived from the settings only (plus the gateway of the course network, asked of Docker), so the
hub config, the service and the CLI agree on every address.
"""

from __future__ import annotations

import functools
from urllib.parse import urlparse

from hub.network import gateway_address
from hub.settings import Settings


@functools.cache
def _gateway(network: str) -> str:
    """The host's address on ``network``, looked up once per process (a Docker API call)."""
    return gateway_address(network)


#: The address that binds every interface (of the Hub's pod on Kubernetes).
ALL_ADDRESSES = "0.0.0.0"  # noqa: S104 - a pod's own interfaces; NetworkPolicies guard it


def hub_ip(settings: Settings) -> str:
    """Where the Hub API (and the exchange) listen: reachable from course containers only.

    On Kubernetes (``auto``) every address of the Hub's own pod: 127.0.0.1 there is the pod's
    loopback, which no course pod and not the proxy's pod can reach. They come through the
    Hub's Service (:func:`hub_connect_host`), as in Zero to JupyterHub.
    """
    if settings.hub.hub_ip != "auto":
        return settings.hub.hub_ip
    if settings.spawner.backend in ("docker", "swarm"):
        return _gateway(settings.spawner.network)
    if settings.spawner.backend == "kubernetes":
        return ALL_ADDRESSES
    return "127.0.0.1"


def hub_connect_host(settings: Settings) -> str:
    """The host course servers connect to for the Hub API and the exchange.

    On Kubernetes the Hub's Service name (``spawner.kubernetes_hub_service``), which cluster DNS
    resolves in every pod; elsewhere the address the Hub binds (:func:`hub_ip`).
    """
    if settings.spawner.backend == "kubernetes":
        return settings.spawner.kubernetes_hub_service
    return hub_ip(settings)


def service_url(settings: Settings) -> str:
    """Where the proxy reaches the LearnHub service (the route JupyterHub gives it).

    On Kubernetes the proxy runs in its own pod, so through the Hub's Service; elsewhere on
    loopback, beside the proxy.
    """
    host = "127.0.0.1"
    if settings.spawner.backend == "kubernetes":
        host = settings.spawner.kubernetes_hub_service
    return f"http://{host}:{settings.hub.service_port}"


def webhook_intake_port(settings: Settings) -> int | None:
    """The loopback port of the webhook intake (:mod:`hub.billing.intake`), or None when the
    service takes Stripe's webhooks itself: ``hub.webhook_port``, with Stripe payments only."""
    if settings.payments.provider != "stripe":
        return None
    return settings.hub.webhook_port


def service_prefix(settings: Settings) -> str:
    """URL path of the LearnHub service, e.g. `/services/learnhub/`."""
    return urlparse(settings.hub.bind_url).path + "services/learnhub/"


def exchange_url(settings: Settings) -> str:
    """The nbgrader exchange as course containers reach it (the bridge gateway, not the proxy)."""
    host = hub_connect_host(settings)
    return f"http://{host}:{settings.hub.service_port}{service_prefix(settings)}exchange/"


def hub_api_url(settings: Settings) -> str:
    """The Hub REST API as seen from this machine (through the proxy)."""
    parsed = urlparse(settings.hub.bind_url)
    host = parsed.hostname or "127.0.0.1"
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - translating a bind-all address
        host = "127.0.0.1"
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    return f"{parsed.scheme}://{host}:{port}{parsed.path}hub/api"
