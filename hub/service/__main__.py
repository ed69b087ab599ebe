"""Run the billing service as a JupyterHub managed service: ``python -m hub.service``.

JupyterHub passes ``JUPYTERHUB_API_URL``, ``JUPYTERHUB_API_TOKEN``, ``JUPYTERHUB_SERVICE_URL``
and ``JUPYTERHUB_SERVICE_PREFIX``; LearnHub's own settings come from ``LEARNHUB_CONFIG`` and the
``LEARNHUB_*`` secrets, read once here at start (never at import).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from pathlib import Path
from urllib.parse import urlsplit

from tornado import web
from tornado.ioloop import PeriodicCallback

from grader.api import grades_routes
from grader.exchange.auth import HubAuthorizer
from grader.exchange.server import exchange_routes
from grader.exchange.storage import ExchangeLimits, ExchangeStorage
from hub.access.hub_groups import HubClient, make_access_sync
from hub.addresses import ALL_ADDRESSES, hub_ip, webhook_intake_port
from hub.billing.client import stripe_client
from hub.billing.intake import WebhookIntake
from hub.billing.reconcile import reconcile
from hub.courses import Catalog
from hub.errors import LearnHubError
from hub.logs import configure_logging
from hub.mail.sender import run_mail
from hub.metrics import ServiceMetrics
from hub.service.app import make_app
from hub.service.context import build_context
from hub.settings import settings_from_environment
from hub.store import Database
from hub.store import repository as repo
from hub.store.revisions import ensure_store
from hub.usage import SAMPLE_SECONDS

log = logging.getLogger("learnhub.service")

#: How often missed events are caught up and membership re-applied.
RECONCILE_SECONDS = 300


def seed_demo_entitlements(db: Database, catalog: Catalog) -> None:
    """Demo mode: the demo learner owns one course from the start (once; a revoke sticks)."""
    from hub.demo_accounts import DEMO_OWNED_COURSE

    if DEMO_OWNED_COURSE not in catalog:
        return
    with db.transaction() as session:
        if not repo.has_any_entitlement(session, "demo-learner", DEMO_OWNED_COURSE):
            repo.set_manual_access(
                session, "demo-learner", DEMO_OWNED_COURSE, active=True, reason="demo seed"
            )


async def main(argv: list[str] | None = None) -> None:
    """Start the service and its periodic reconciliation; run until killed.

    ``--container-address`` is where course containers reach the exchange (the Docker bridge
    gateway); the Hub resolves it and passes it, because the service has no Docker access. Run
    by hand, the service looks it up itself.
    """
    parser = argparse.ArgumentParser(prog="python -m hub.service")
    parser.add_argument("--container-address", default="")
    args = parser.parse_args(argv)
    env = dict(os.environ)
    # Files this service creates (its database, the exchange store) are its owner's alone.
    os.umask(0o077)
    settings = settings_from_environment(env, Path("learnhub.yaml"), process="service")
    configure_logging(settings.hub.log_level)
    catalog = Catalog.load(settings.courses_dir)
    try:
        ensure_store(settings.learnhub_db_url)
    except LearnHubError as exc:
        # One line in the Hub's log naming the remedy, and a non-zero exit; no traceback.
        log.error("LearnHub service cannot start: %s", exc)
        raise SystemExit(2) from None
    db = Database(settings.learnhub_db_url)
    if settings.mode == "demo":
        seed_demo_entitlements(db, catalog)
    hub = HubClient(env["JUPYTERHUB_API_URL"], env["JUPYTERHUB_API_TOKEN"])
    metrics = ServiceMetrics()
    sync = make_access_sync(db, catalog, settings, hub, on_sync=metrics.count_sync)
    service_url = env["JUPYTERHUB_SERVICE_URL"]
    prefix = env.get("JUPYTERHUB_SERVICE_PREFIX", "/services/learnhub/")
    client = None
    if settings.payments.provider == "stripe":
        client = stripe_client(settings)
    storage = ExchangeStorage(
        settings.exchange_dir,
        db,
        courses=catalog,
        limits=ExchangeLimits.from_settings(settings.exchange),
    )
    authorizer = HubAuthorizer(hub)
    exchange = exchange_routes(prefix, storage=storage, authorizer=authorizer)
    grades = grades_routes(prefix, authorizer=authorizer, settings=settings, catalog=catalog)
    ctx = build_context(
        settings,
        catalog,
        db,
        client,
        sync,
        prefix=prefix,
        service_url=service_url,
        hub_base_url=env.get("JUPYTERHUB_BASE_URL"),
        hub_client=hub,
        metrics=metrics,
    )
    app = make_app(ctx, extra_routes=[*exchange, *grades])
    url = urlsplit(service_url)
    container_side = args.container_address or hub_ip(settings)
    if container_side == ALL_ADDRESSES:
        # Kubernetes: the proxy's pod and the course pods both come to this pod through the
        # Hub's Service (the service's URL names it, which no pod can bind); one listener on
        # the pod's addresses, which the NetworkPolicies limit to those two.
        app.listen(url.port or 80, ALL_ADDRESSES)
    else:
        app.listen(url.port or 80, url.hostname or "127.0.0.1")
    # Course containers reach the exchange (and only the exchange) on the Docker bridge gateway;
    # everything else of the service stays behind the proxy.
    if container_side not in (url.hostname or "127.0.0.1", ALL_ADDRESSES):
        web.Application(exchange).listen(url.port or 80, container_side)
        log.info("exchange listening for containers", extra={"address": container_side})
    billing, events = ctx.billing, ctx.events
    # Events acknowledged to Stripe before a restart but not processed yet.
    await events.start()
    intake = None
    intake_port = webhook_intake_port(settings)
    if intake_port is not None:
        # Stripe's deliveries in a process of their own (hub/billing/intake.py); the edge
        # sends the webhook's path there, and this process only works the queue.
        intake = WebhookIntake(
            events,
            metrics,
            host="127.0.0.1",
            port=intake_port,
            path=prefix + "stripe/webhook",
            env=env,
        )
        try:
            await intake.start()
        except LearnHubError as exc:
            log.error("LearnHub service cannot start: %s", exc)
            raise SystemExit(2) from None
        ctx.monitor.webhook_intake = intake

    async def reconcile_once() -> None:
        try:
            await events.recover()
            await reconcile(billing)
        except LearnHubError as exc:
            log.warning("reconcile failed; retrying later", extra={"error": str(exc)})

    PeriodicCallback(reconcile_once, RECONCILE_SECONDS * 1000).start()

    async def sample_usage() -> None:
        try:
            await ctx.hub_figures.sample_usage(hub, db, set(catalog.ids()))
        except LearnHubError as exc:
            log.warning("usage sample failed; retrying later", extra={"error": str(exc)})

    PeriodicCallback(sample_usage, SAMPLE_SECONDS * 1000).start()
    await reconcile_once()
    # JupyterHub stops managed services with SIGTERM (SIGINT when run by hand): exit cleanly.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    mail = asyncio.ensure_future(run_mail(settings, db, catalog, stop, registry=metrics.registry))
    await stop.wait()
    await mail
    log.info("LearnHub service stopping")
    if intake is not None:
        await intake.aclose()
    await events.aclose()
    await billing.aclose()
    await authorizer.aclose()
    await ctx.monitor.aclose()
    db.dispose()


if __name__ == "__main__":
    asyncio.run(main())
