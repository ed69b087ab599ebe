"""What the LearnHub service's handlers work with, built once at start: :class:`ServiceContext`.

:func:`build_context` makes the parts (settings, catalog, database, Stripe client, fulfilment,
event queue, templates, URLs, webhook secrets, metrics) exactly once, in
``hub/service/__main__.py`` or a test; every handler then reads them from ``self.ctx``
(:class:`hub.service.base.BaseHandler`).

The context reaches handlers as one tornado application setting (``learnhub_context``) read by
one typed property, rather than through ``initialize(ctx)`` on every route: the route tables
stay plain functions of the URL prefix, handlers keep ``initialize`` for their own arguments
(the checkout's ``kind``), and routes whose handlers are not ours (JupyterHub's OAuth callback,
the exchange and grades API) need no extra argument threaded through them. Tornado already
hands every handler its application's settings, so this adds one key, not a new mechanism.
"""

from __future__ import annotations

import functools
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from hub.access.hub_groups import HubClient
from hub.billing.client import StripeAPI
from hub.billing.events import EventQueue
from hub.billing.fulfilment import Billing, SyncAccess
from hub.billing.webhook import split_secrets
from hub.courses import Catalog
from hub.metrics import ServiceMetrics
from hub.preview import PreviewLessons
from hub.service.grade_figures import GradebookScores
from hub.service.hub_figures import HubFigures
from hub.service.monitoring import Monitor
from hub.service.ratelimit import RateLimiter
from hub.settings import Settings
from hub.store import Database

#: The tornado application setting that holds the :class:`ServiceContext`.
CONTEXT_SETTING = "learnhub_context"

TEMPLATES_DIR = Path(__file__).parent / "templates"
#: The Hub's templates, whose `site/` parts (the navigation) every page of the site shares.
SITE_TEMPLATES_DIR = Path(__file__).parent.parent / "templates"


@dataclass(frozen=True)
class ServiceContext:
    """The service's parts, shared by every request of one running service."""

    settings: Settings
    catalog: Catalog
    db: Database
    #: The Stripe API client (real Stripe, or the demo's own API under ``{prefix}demo-stripe/``).
    stripe: StripeAPI
    #: Fulfilment: turns checkouts and Stripe events into entitlements, then syncs access.
    billing: Billing
    #: Verified webhook events, recorded, then processed in batches.
    events: EventQueue
    templates: jinja2.Environment
    #: URL prefix of the service, ending in ``/``.
    prefix: str
    #: The hub's base URL path (``/`` or e.g. ``/@/space%20word/``), ending in ``/``.
    hub_base: str
    #: Secrets Stripe signs webhook events with (several while one is being rotated).
    webhook_secrets: tuple[str, ...]
    #: The service's Prometheus counters, in a registry of their own.
    metrics: ServiceMetrics
    #: ``/metrics`` and ``/health``: the database figures, the health checks, the token check.
    monitor: Monitor
    #: The service's Hub API client; without it the activity figure shows as unavailable.
    hub_client: HubClient | None = None
    #: Where the service itself listens (``JUPYTERHUB_SERVICE_URL``); the demo calls itself there.
    service_url: str | None = None
    #: The key the demo Stripe API accepts; None when it serves nobody.
    demo_api_key: str | None = None
    #: Per-person request limits (``limits`` settings) of checkout, success page, Q&A and
    #: reviews; None (a context made by hand) limits nothing.
    limiter: RateLimiter | None = None
    #: The courses' free preview lessons, rendered once each (and again when one changes).
    previews: PreviewLessons = field(default_factory=PreviewLessons)
    #: The operator dashboard's Hub readings (activity, usage samples), shared by its views.
    hub_figures: HubFigures = field(default_factory=HubFigures)
    #: The operator dashboard's quality figure, each gradebook read again only when it changed.
    grade_figures: GradebookScores = field(default_factory=GradebookScores)

    @functools.cached_property
    def public_origin(self) -> str:
        """``scheme://host[:port]`` of the public URL, worked out once (every answer's
        security headers name it; per request it was a few percent of a webhook's CPU)."""
        return self.settings.absolute_url("").rstrip("/")


def template_environment() -> jinja2.Environment:
    """The Jinja2 environment of the service's pages (autoescaped HTML)."""
    return jinja2.Environment(
        # The service's pages first, then the site-wide parts they share with the Hub's pages.
        loader=jinja2.FileSystemLoader([str(TEMPLATES_DIR), str(SITE_TEMPLATES_DIR)]),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )


def build_context(
    settings: Settings,
    catalog: Catalog,
    db: Database,
    stripe_client: StripeAPI | None,
    sync_access: SyncAccess,
    *,
    prefix: str = "/services/learnhub/",
    service_url: str | None = None,
    hub_base_url: str | None = None,
    hub_client: HubClient | None = None,
    metrics: ServiceMetrics | None = None,
) -> ServiceContext:
    """The parts of one running LearnHub service.

    ``stripe_client`` is required with ``payments.provider: stripe``. With ``demo`` it may be
    None: the service then serves its own demo Stripe API under ``{prefix}demo-stripe/`` and
    needs ``service_url`` (e.g. ``JUPYTERHUB_SERVICE_URL``, ``http://127.0.0.1:10101``) to reach
    it. ``hub_base_url`` is the hub's base URL path (``JUPYTERHUB_BASE_URL``); by default it is
    what precedes ``services/`` in ``prefix``. ``hub_client`` (the service's Hub API client)
    feeds the operator dashboard's activity figure; without it that figure is shown as
    unavailable. ``metrics`` are the counters the parts made before the context (the access
    sync's) count into; by default a new set. Webhook events go to the context's ``events``
    (:class:`~hub.billing.events.EventQueue`), which starts working with the first delivery;
    the service awaits its ``start()`` to take up events queued before a restart.
    """
    if not prefix.endswith("/"):
        prefix += "/"
    if hub_base_url is None:
        hub_base_url = prefix.rsplit("services/", 1)[0] if "services/" in prefix else "/"
    if not hub_base_url.endswith("/"):
        hub_base_url += "/"
    webhook_secrets = split_secrets(settings.secret("stripe_webhook_secrets"))
    demo_api_key = None
    if settings.payments.provider == "demo":
        if not webhook_secrets:
            # No Stripe here: a per-process secret still makes every event genuinely signed.
            webhook_secrets = ["whsec_demo_" + secrets.token_hex(24)]
        api_key = settings.secret("stripe_secret_key") or "sk_test_demo_" + secrets.token_hex(16)
        if stripe_client is None:
            if service_url is None:
                raise ValueError("the demo payment provider needs service_url to reach itself")
            base = service_url.rstrip("/") + prefix + "demo-stripe"
            stripe_client = StripeAPI(api_key, base, max_network_retries=0)
            demo_api_key = api_key
    elif stripe_client is None:
        raise ValueError("payments.provider stripe needs a stripe_client")
    if not webhook_secrets:
        raise ValueError("LEARNHUB_STRIPE_WEBHOOK_SECRETS is required to receive Stripe events")
    billing = Billing(settings, db, stripe_client, sync_access)
    metrics = metrics or ServiceMetrics()
    monitor = Monitor(
        settings, db, metrics, hub_api_url=hub_client.api_url if hub_client is not None else None
    )
    return ServiceContext(
        settings=settings,
        catalog=catalog,
        db=db,
        stripe=stripe_client,
        billing=billing,
        events=EventQueue(billing, metrics=metrics),
        templates=template_environment(),
        prefix=prefix,
        hub_base=hub_base_url,
        webhook_secrets=tuple(webhook_secrets),
        metrics=metrics,
        monitor=monitor,
        hub_client=hub_client,
        service_url=service_url,
        demo_api_key=demo_api_key,
        limiter=RateLimiter(settings.limits.as_buckets()),
    )
