"""What machines ask the service: ``{prefix}metrics`` (Prometheus) and ``{prefix}health``.

``metrics`` answers only a Hub token carrying :data:`hub.metrics.METRICS_SCOPE` (the
``metrics-scraper`` role, docs/how-to/production.md "Monitoring"): no token 401, a token
without the scope 403, both with a JSON message that says what to send. ``health`` needs no
token and shows no secret and no user data, only whether each dependency answers.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import httpx
from prometheus_client import CONTENT_TYPE_LATEST

from hub.metrics import METRICS_SCOPE
from hub.service.base import BaseHandler, route

log = logging.getLogger("learnhub.service")

#: ``Authorization: token X`` (JupyterHub's spelling) or ``Bearer X`` (Prometheus').
_AUTHORIZATION = re.compile(r"^(?:token|bearer)\s+(\S+)$", re.IGNORECASE)

_HOW_TO = (
    f"send a Hub API token with the scope {METRICS_SCOPE} as `Authorization: Bearer <token>` "
    "(LEARNHUB_METRICS_TOKEN, role metrics-scraper; see docs/how-to/production.md, Monitoring)"
)


class MetricsHandler(BaseHandler):
    """``GET {prefix}metrics``: Prometheus text, for holders of the metrics scope."""

    def check_xsrf_cookie(self) -> None:
        """GET only; the token is the authentication."""

    async def get(self) -> None:
        """Check the caller's token with the Hub, then render every figure."""
        match = _AUTHORIZATION.match(self.request.headers.get("Authorization", "").strip())
        if match is None:
            self.set_header("WWW-Authenticate", 'Bearer realm="learnhub-metrics"')
            self.write_json(401, {"error": f"authentication required: {_HOW_TO}"})
            return
        monitor = self.ctx.monitor
        try:
            allowed = await monitor.may_read_metrics(match.group(1))
        except httpx.HTTPError as exc:
            log.warning(
                "metrics: token not checked", extra={"error": str(exc), "outcome": "hub_error"}
            )
            self.write_json(503, {"error": "the Hub could not be asked about this token; retry"})
            return
        if allowed is None:
            self.set_header("WWW-Authenticate", 'Bearer realm="learnhub-metrics"')
            self.write_json(401, {"error": f"the Hub does not know this token: {_HOW_TO}"})
            return
        if not allowed:
            log.warning("metrics refused", extra={"outcome": "403", "reason": "missing scope"})
            message = f"this token lacks the scope {METRICS_SCOPE}: {_HOW_TO}"
            self.write_json(403, {"error": message})
            return
        body = await monitor.render_metrics()
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.set_header("Cache-Control", "no-store")
        self.finish(body)


class HealthHandler(BaseHandler):
    """``GET {prefix}health``: ``ok`` (200) or ``degraded`` (503), as JSON, for anyone."""

    async def get(self) -> None:
        """Report database, Hub API and event queue."""
        status, body = await self.ctx.monitor.health()
        self.set_header("Cache-Control", "no-store")
        self.write_json(status, body)


def probe_routes(prefix: str) -> list[Any]:
    """Routes of the metrics and health endpoints."""
    return [
        (route(prefix, "metrics"), MetricsHandler),
        (route(prefix, "health"), HealthHandler),
    ]
