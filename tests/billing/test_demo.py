"""The offline demo provider end to end: checkout page, Pay, signed events, webhook, Refund."""

from __future__ import annotations

import asyncio
import re
import socket

import httpx
import sqlalchemy as sa
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from hub.access.hub_groups import make_access_sync
from hub.courses import Catalog
from hub.service.app import make_app
from hub.service.context import build_context
from hub.settings import Settings
from hub.store import Database, Entitlement, StripeEvent
from tests.billing.conftest import PREFIX, FakeHub


async def test_demo_pay_and_refund(
    db: Database, catalog: Catalog, fake_hub: FakeHub, test_user_header: None
) -> None:
    settings = Settings.model_validate({"payments": {"provider": "demo"}})
    # The demo calls its own API and webhook, so it must know its URL before serving.
    sockets = bind_sockets(0, "127.0.0.1", family=socket.AF_INET)
    url = f"http://127.0.0.1:{sockets[0].getsockname()[1]}"
    sync = make_access_sync(db, catalog, settings, fake_hub)
    ctx = build_context(settings, catalog, db, None, sync, prefix=PREFIX, service_url=url)
    events = ctx.events
    server = HTTPServer(make_app(ctx))
    server.add_sockets(sockets)
    headers = {"X-Test-User": "alice"}
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            created = await http.post(f"{PREFIX}checkout/python-101", headers=headers)
            assert created.status_code == 303
            page_path = created.headers["Location"]
            assert page_path.startswith(f"{PREFIX}demo-checkout/cs_")
            page = await http.get(page_path, headers=headers)
            assert "Pay (demo)" in page.text
            assert (await http.get(page_path, headers={"X-Test-User": "bob"})).status_code == 404
            xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text)
            assert xsrf is not None
            form = {"action": "pay", "_xsrf": xsrf.group(1)}
            paid = await http.post(page_path, data=form, headers=headers)
            assert paid.status_code == 303
            assert "checkout/success?session_id=cs_" in paid.headers["Location"]
            # The webhook acknowledged the events; their processing follows within moments.
            await asyncio.wait_for(events.join(), 10)
            assert fake_hub.group_members["course-python-101"] == {"alice"}
            form["action"] = "refund"
            refunded = await http.post(page_path, data=form, headers=headers)
            assert refunded.status_code == 200
            await asyncio.wait_for(events.join(), 10)
            assert fake_hub.group_members["course-python-101"] == set()
            unauthorised = await http.get(f"{PREFIX}demo-stripe/v1/events")
            assert unauthorised.status_code == 401
    finally:
        server.stop()
        await server.close_all_connections()
        await events.aclose()
        await ctx.billing.aclose()
    with db.transaction() as session:
        [ent] = session.scalars(sa.select(Entitlement)).all()
        assert (ent.status, ent.status_reason) == ("revoked", "refunded")
        types = {e.type for e in session.scalars(sa.select(StripeEvent))}
        assert {"checkout.session.completed", "charge.refunded"} <= types
