"""The offline demo payment provider: Stripe objects in LearnHub's DB, genuinely signed events.

With ``payments.provider: demo`` there are no Stripe keys. The demo checkout page plays Stripe:
it changes objects through :class:`~hub.billing.simulator.StripeSimulator` on a
:class:`DatabaseStore`, signs the resulting events with the local webhook secret exactly as
Stripe does, and POSTs them to the normal webhook endpoint, which verifies them and re-fetches
objects from the demo API (served from the same table). Production mode refuses ``demo``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import sqlalchemy as sa
import stripe

from hub.store import Database, DemoStripeObject

log = logging.getLogger("learnhub.billing.demo")


class DatabaseStore:
    """An :class:`~hub.billing.stripe_wire.ObjectStore` on the ``demo_stripe_objects`` table."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, object_id: str) -> dict[str, Any] | None:
        """The object, or None."""
        with self.db.transaction() as session:
            row = session.get(DemoStripeObject, object_id)
            return None if row is None else dict(row.data)

    def put(self, obj: dict[str, Any]) -> None:
        """Insert or replace ``obj``."""
        with self.db.transaction() as session:
            row = session.get(DemoStripeObject, str(obj["id"]))
            if row is None:
                session.add(
                    DemoStripeObject(
                        id=str(obj["id"]),
                        object=str(obj["object"]),
                        created=int(obj.get("created", 0)),
                        data=obj,
                    )
                )
            else:
                # A new dict, so SQLAlchemy sees the JSON column changed.
                row.data = json.loads(json.dumps(obj))

    def all(self, object_type: str) -> list[dict[str, Any]]:
        """All objects of one type."""
        with self.db.transaction() as session:
            rows = session.scalars(
                sa.select(DemoStripeObject).where(DemoStripeObject.object == object_type)
            )
            return [dict(row.data) for row in rows]


def sign(payload: str, secret: str, timestamp: int | None = None) -> str:
    """The ``Stripe-Signature`` header Stripe would send for ``payload``."""
    return str(stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp))


async def deliver(
    client: httpx.AsyncClient, webhook_url: str, event: dict[str, Any], secret: str
) -> int:
    """Sign ``event`` and POST it to ``webhook_url`` like Stripe does; return the status."""
    payload = json.dumps(event)
    response = await client.post(
        webhook_url,
        content=payload.encode(),
        headers={"Content-Type": "application/json", "Stripe-Signature": sign(payload, secret)},
    )
    log.info(
        "demo event delivered",
        extra={"event": event["id"], "type": event["type"], "status": response.status_code},
    )
    return response.status_code
