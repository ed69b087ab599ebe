"""A loopback stand-in for Stripe's API, speaking its wire format, backed by a dict.

``StripeClient(api_key, base_addresses={"api": standin.url})`` talks to it with the real stripe
library. Tests change Stripe's state through ``standin.sim`` (a
:class:`hub.billing.simulator.StripeSimulator`) or ``standin.store.objects`` directly.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import stripe

from hub.billing import stripe_wire
from hub.billing.client import StripeAPI
from hub.billing.simulator import DictStore, StripeSimulator
from hub.store import Database
from hub.store import repository as repo

API_KEY = "sk_test_standin"


class StripeStandIn:
    """The server, its objects and a log of requests."""

    def __init__(self, *, latency: float = 0.0) -> None:
        self.store = DictStore()
        self.sim = StripeSimulator(self.store)
        self.requests: list[tuple[str, str]] = []
        self.down = False
        #: Seconds each answer waits, like Stripe's round trip over the internet (~0.1-0.3 s).
        self.latency = latency
        #: LearnHub database URL in which :meth:`course_checkout` records its sessions, as the
        #: service does when it creates one (None: the session is foreign to LearnHub).
        self.record_sessions_in: str | None = None
        standin = self

        class Handler(BaseHTTPRequestHandler):
            # Keep-alive like Stripe's API, the whole answer in one write (no Nagle stall).
            protocol_version = "HTTP/1.1"
            wbufsize = -1
            disable_nagle_algorithm = True

            def _answer(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                standin.requests.append((self.command, parts.path))
                if standin.latency:
                    time.sleep(standin.latency)
                if standin.down:
                    status, payload = 500, {"error": {"type": "api_error", "message": "down"}}
                elif self.headers.get("Authorization") != f"Bearer {API_KEY}":
                    status, payload = stripe_wire.error(401, "Invalid API Key", "api_key_invalid")
                else:
                    status, payload = stripe_wire.handle(
                        standin.store,
                        self.command,
                        parts.path,
                        parts.query,
                        body,
                        checkout_url=lambda sid: f"https://checkout.stripe.test/c/pay/{sid}",
                    )
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Request-Id", "req_standin")
                self.end_headers()
                self.wfile.write(data)

            do_GET = _answer
            do_POST = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            # The service opens one connection per re-fetch thread, many at once: a listen
            # backlog of 5 would drop SYNs and stall those fetches for a second.
            request_queue_size = 128

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> StripeStandIn:
        """Start serving in a thread."""
        self.thread.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()

    def course_checkout(self, user: str, course_id: str, amount: int, name: str) -> str:
        """Create the Checkout Session the LearnHub service would create for a course purchase.

        Returns its id: what Stripe holds once a learner has started buying ``course_id``. With
        :attr:`record_sessions_in` set, LearnHub's record of the session (user, course, price
        asked for) is written there too, so fulfilment accepts it; otherwise it is a session
        LearnHub did not create, which grants nothing.
        """
        if self.record_sessions_in is None:
            return open_course_checkout(self.client(), user, course_id, amount, name)
        db = Database(self.record_sessions_in)
        try:
            return open_course_checkout(self.client(), user, course_id, amount, name, db)
        finally:
            db.dispose()

    def client(self) -> StripeAPI:
        """A real StripeClient, as LearnHub makes them, pointed at this stand-in."""
        return StripeAPI(API_KEY, self.url, max_network_retries=0)


def open_course_checkout(
    client: stripe.StripeClient,
    user: str,
    course_id: str,
    amount: int,
    name: str,
    db: Database | None = None,
) -> str:
    """Create, through ``client``, the USD Checkout Session LearnHub's checkout makes for a
    course, and with ``db`` record it as LearnHub's (so fulfilment accepts it). Returns its id."""
    metadata = {"learnhub_user": user, "learnhub_course": course_id}
    session = client.v1.checkout.sessions.create(
        {
            "mode": "payment",
            "client_reference_id": user,
            "metadata": metadata,
            "payment_intent_data": {"metadata": metadata},
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": "usd",
                        "unit_amount": amount,
                        "product_data": {"name": name},
                    },
                }
            ],
            "success_url": "http://127.0.0.1/success",
            "cancel_url": "http://127.0.0.1/cancel",
        }
    )
    if db is not None:
        with db.transaction() as s:
            repo.record_checkout_session(
                s,
                session_id=str(session.id),
                username=user,
                course_id=course_id,
                plan_id=None,
                mode="payment",
                status="open",
                amount=amount,
                currency="usd",
            )
    return str(session.id)
