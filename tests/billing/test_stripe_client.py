"""LearnHub's Stripe client (hub/billing/client.py) on the wire: TLS verified, proxy kept.

Blocking calls go through requests, awaited calls (every webhook re-fetch) through aiohttp; both
must verify Stripe's certificate against the stripe library's CA bundle, refuse a certificate
they cannot verify without retrying, and use the proxy the environment names for Stripe.
"""

from __future__ import annotations

import http.client
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import stripe

from harness.edge import make_ca
from harness.stripe_standin import API_KEY, StripeStandIn, open_course_checkout
from hub.billing.client import StripeAPI

SESSION_PATH = "/v1/checkout/sessions/{}"


@pytest.fixture
def tls_standin(tmp_path: Path) -> Iterator[tuple[StripeStandIn, str, Path]]:
    """The Stripe stand-in behind TLS, with a certificate for ``localhost`` from a test CA."""
    ca = make_ca(tmp_path, "localhost")
    standin = StripeStandIn()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(ca.chain_pem, ca.key_pem)
    standin.server.socket = context.wrap_socket(standin.server.socket, server_side=True)
    standin.start()
    url = f"https://localhost:{standin.server.server_address[1]}"
    yield standin, url, ca.ca_pem
    standin.stop()


def _checkout(client: StripeAPI) -> str:
    return open_course_checkout(client, "alice", "python-basics", 4900, "Python Basics")


async def test_both_paths_verify_stripes_certificate(
    tls_standin: tuple[StripeStandIn, str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    standin, url, ca_pem = tls_standin
    # As the stripe library's own CA bundle would trust Stripe's certificate.
    monkeypatch.setattr(stripe, "ca_bundle_path", str(ca_pem))
    client = StripeAPI(API_KEY, url, max_network_retries=0)
    try:
        session_id = _checkout(client)  # blocking: requests
        answer = await client.raw_request_async("get", SESSION_PATH.format(session_id))
        assert answer.data["id"] == session_id
        assert answer.data["metadata"] == {
            "learnhub_user": "alice",
            "learnhub_course": "python-basics",
        }
    finally:
        await client.aclose()
    assert standin.requests == [
        ("POST", "/v1/checkout/sessions"),
        ("GET", SESSION_PATH.format(session_id)),
    ]


async def test_a_certificate_it_cannot_verify_is_refused_and_not_retried(
    tls_standin: tuple[StripeStandIn, str, Path],
) -> None:
    standin, url, _ = tls_standin
    # The stripe library's bundle does not hold the test CA: an intercepting network.
    client = StripeAPI(API_KEY, url, max_network_retries=2)
    try:
        with pytest.raises(stripe.APIConnectionError) as refused:
            await client.raw_request_async("get", SESSION_PATH.format("cs_test_x"))
    finally:
        await client.aclose()
    assert refused.value.should_retry is False
    assert "Could not verify Stripe's SSL certificate" in str(refused.value)
    with pytest.raises(stripe.APIConnectionError) as refused_blocking:
        client.raw_request("get", SESSION_PATH.format("cs_test_x"))
    assert refused_blocking.value.should_retry is False
    assert standin.requests == []


class _ForwardProxy:
    """A plain HTTP forward proxy on loopback that records what passes through it."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                target = urlsplit(self.path)  # absolute form: http://host:port/path?query
                proxy.seen.append((self.command, target.path))
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() != "proxy-connection"}
                upstream = http.client.HTTPConnection(target.hostname, target.port, timeout=10)
                path = target.path + (f"?{target.query}" if target.query else "")
                upstream.request(self.command, path, body=body, headers=headers)
                answer = upstream.getresponse()
                data = answer.read()
                self.send_response(answer.status)
                for key, value in answer.getheaders():
                    if key.lower() not in ("connection", "transfer-encoding", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                upstream.close()

            do_GET = _forward
            do_POST = _forward

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


async def test_the_environments_proxy_carries_both_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    standin = StripeStandIn().start()
    proxy = _ForwardProxy()
    for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    try:
        client = StripeAPI(API_KEY, standin.url, max_network_retries=0)
        # Read once, when the client is made: a later change of the environment is not seen.
        monkeypatch.delenv("HTTP_PROXY")
        try:
            session_id = _checkout(client)
            answer = await client.raw_request_async("get", SESSION_PATH.format(session_id))
        finally:
            await client.aclose()
        assert answer.data["id"] == session_id
    finally:
        proxy.stop()
        standin.stop()
    expected = [("POST", "/v1/checkout/sessions"), ("GET", SESSION_PATH.format(session_id))]
    assert proxy.seen == expected
    assert standin.requests == expected
