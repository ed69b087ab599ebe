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


def hub_ip(settings: Settings) -> str:
    """Where the Hub API (and the exchange) listen: reachable from course containers only."""
    if settings.hub.hub_ip != "auto":
        return settings.hub.hub_ip
    if settings.spawner.backend in ("docker", "swarm"):
        return _gateway(settings.spawner.network)
    return "127.0.0.1"


def service_prefix(settings: Settings) -> str:
    """URL path of the LearnHub service, e.g. `/services/learnhub/`."""
    return urlparse(settings.hub.bind_url).path + "services/learnhub/"


def exchange_url(settings: Settings) -> str:
    """The nbgrader exchange as course containers reach it (the bridge gateway, not the proxy)."""
    return (
        f"http://{hub_ip(settings)}:{settings.hub.service_port}{service_prefix(settings)}exchange/"
    )


def hub_api_url(settings: Settings) -> str:
    """The Hub REST API as seen from this machine (through the proxy)."""
    parsed = urlparse(settings.hub.bind_url)
    host = parsed.hostname or "127.0.0.1"
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - translating a bind-all address
        host = "127.0.0.1"
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    return f"{parsed.scheme}://{host}:{port}{parsed.path}hub/api"
