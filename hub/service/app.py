"""The LearnHub service's tornado application: its route table, from each module's routes.

The parts the handlers use come from one :class:`~hub.service.context.ServiceContext`, built
once (:func:`~hub.service.context.build_context`); this module only puts the routes together
and sets what tornado itself needs (cookies, XSRF, the access log).
"""

from __future__ import annotations

import secrets
from typing import Any

from tornado import web

from hub.service.base import NotFoundPage, log_request
from hub.service.certificates import certificate_routes
from hub.service.community import community_routes
from hub.service.context import CONTEXT_SETTING, ServiceContext
from hub.service.dashboards import dashboard_routes
from hub.service.demo import demo_routes
from hub.service.enrolment import enrolment_routes
from hub.service.grading import grading_routes
from hub.service.mail_pages import mail_routes
from hub.service.pages import page_routes
from hub.service.payments import payment_routes
from hub.service.probes import probe_routes
from hub.service.static_files import static_routes
from hub.service.storefront import storefront_routes
from hub.service.time_zone import time_zone_routes


def make_app(
    ctx: ServiceContext,
    *,
    cookie_secret: bytes | None = None,
    extra_routes: list[Any] | None = None,
) -> web.Application:
    """The tornado application of the LearnHub service built on ``ctx``.

    ``extra_routes`` (the exchange and grades API) come last. With ``payments.provider: demo``
    the app also serves the demo's Stripe API and checkout page.
    """
    prefix = ctx.prefix
    demo = demo_routes(prefix) if ctx.settings.payments.provider == "demo" else []
    routes = [
        *demo,
        *payment_routes(prefix),
        *probe_routes(prefix),
        *page_routes(prefix),
        *storefront_routes(prefix, ctx.hub_base),
        *dashboard_routes(prefix),
        *grading_routes(prefix),
        *enrolment_routes(prefix),
        *community_routes(prefix),
        *static_routes(prefix),
        *mail_routes(prefix),
        *certificate_routes(prefix),
        *time_zone_routes(prefix),
        *(extra_routes or []),
    ]
    settings: dict[str, Any] = {
        CONTEXT_SETTING: ctx,
        # Signs the OAuth state/token cookies and the XSRF tokens; a restart just means a
        # silent re-login.
        "cookie_secret": cookie_secret or secrets.token_bytes(32),
        # Every POST must carry a valid token; the webhook and demo API opt out explicitly.
        "xsrf_cookies": True,
        "log_function": log_request,
        # Unknown paths get the service's 404 page (translated, with its security headers).
        "default_handler_class": NotFoundPage,
    }
    return web.Application(routes, **settings)
