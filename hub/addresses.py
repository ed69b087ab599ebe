"""Where LearnHub's parts reach each other: the Hub API, the service, the exchange.

Derived from the settings only (plus the Docker bridge's gateway, asked of the docker CLI), so the
hub config, the service and the CLI agree on every address.
"""

from __future__ import annotations

import functools
import subprocess
from urllib.parse import urlparse

from hub.settings import Settings


@functools.cache
def bridge_gateway(network: str = "bridge") -> str:
    """The gateway address of a Docker network: how containers reach the host.

    Cached: the Hub's address and the exchange URL both need it while one config loads, and
    each lookup runs the docker CLI.
    """
    try:
        out = subprocess.run(
            [
                "docker",
                "network",
                "inspect",
                network,
                "--format",
                "{{range .IPAM.Config}}{{.Gateway}}{{end}}",
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        out = ""
    return out or "172.17.0.1"


def hub_ip(settings: Settings) -> str:
    """Where the Hub API (and the exchange) listen: reachable from course containers only."""
    if settings.hub.hub_ip != "auto":
        return settings.hub.hub_ip
    if settings.spawner.backend in ("docker", "swarm"):
        return bridge_gateway(settings.spawner.network)
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
