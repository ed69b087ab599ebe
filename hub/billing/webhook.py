"""Verification of Stripe webhook deliveries: the raw body, every configured secret."""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import stripe
from sqlalchemy.exc import SQLAlchemyError
from tornado import web
from tornado.http1connection import HTTP1Connection

from hub.errors import LearnHubError
from hub.metrics import rejected_outcome

log = logging.getLogger("learnhub.billing")

#: Stripe's own default: a signed timestamp older than this is a replay.
TOLERANCE_SECONDS = 300
#: Largest webhook body read. Stripe's events are a few kilobytes (the biggest, with expanded
#: line items, stay far below this); without a limit Tornado buffers up to 100 MB from anyone
#: before the signature can be checked.
MAX_BODY_BYTES = 1024 * 1024

_Handler = TypeVar("_Handler", bound=web.RequestHandler)


def body_too_large(content_length: str | None, limit: int = MAX_BODY_BYTES) -> bool:
    """Whether a declared ``Content-Length`` is over ``limit`` (or is not a length at all)."""
    if content_length is None:
        return False  # chunked: the connection's max_body_size cuts it off at the limit
    text = content_length.strip()
    return not text.isdigit() or int(text) > limit


def bounded_body(handler: type[_Handler]) -> type[_Handler]:
    """Class decorator: the handler's body streams in and is refused (413) over the limit.

    The check happens on the headers, before a byte of the body is buffered and before any
    signature work; a chunked body is cut off by Tornado at :data:`MAX_BODY_BYTES`. The
    handler still finds the whole body in ``self.request.body`` when ``post`` runs.
    """
    own_prepare = handler.prepare

    async def prepare(self: web.RequestHandler) -> None:
        if body_too_large(self.request.headers.get("Content-Length")):
            log.warning(
                "webhook rejected",
                extra={"reason": "body over the limit", "outcome": "rejected"},
            )
            self.set_status(413)
            self.set_header("Content-Type", "application/json; charset=utf-8")
            self.finish(json.dumps({"error": f"body larger than {MAX_BODY_BYTES} bytes; not read"}))
            return
        if isinstance(self.request.connection, HTTP1Connection):
            self.request.connection.set_max_body_size(MAX_BODY_BYTES)
        self.request.body = b""
        result = own_prepare(self)
        if inspect.isawaitable(result):
            await result

    def data_received(self: web.RequestHandler, chunk: bytes) -> None:
        self.request.body += chunk

    handler.prepare = prepare  # type: ignore[assignment,method-assign]
    handler.data_received = data_received  # type: ignore[method-assign]
    return web.stream_request_body(handler)


class WebhookRejected(LearnHubError):
    """A delivery that must not be processed; ``reason`` is safe to return to the sender."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def split_secrets(value: str | None) -> list[str]:
    """``whsec_a,whsec_b`` -> ``["whsec_a", "whsec_b"]`` (several secrets during rotation)."""
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def verify_event(
    payload: bytes,
    signature_header: str | None,
    secrets: Sequence[str],
    *,
    tolerance: int = TOLERANCE_SECONDS,
) -> dict[str, Any]:
    """Check ``signature_header`` over the raw ``payload`` with each secret; return the event.

    Raises :class:`WebhookRejected` for a missing secret or header, a signature no secret
    matches, a stale timestamp, or a body that is not a Stripe event. There is no way to skip
    the check: with no secret configured every delivery is rejected.
    """
    if not secrets:
        raise WebhookRejected("no webhook secret is configured; refusing unverifiable events")
    if not signature_header:
        raise WebhookRejected("missing Stripe-Signature header")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise WebhookRejected("malformed body: not UTF-8") from None
    stale = False
    for secret in secrets:
        try:
            stripe.WebhookSignature.verify_header(text, signature_header, secret, tolerance)
        except stripe.SignatureVerificationError as exc:
            # verify_header checks the signature before the timestamp, so "tolerance" in the
            # message means this secret signed it, but too long ago (a replay).
            stale = stale or "tolerance" in str(exc)
            continue
        break
    else:
        if stale:
            raise WebhookRejected(f"stale timestamp: older than {tolerance} seconds")
        raise WebhookRejected("invalid signature")
    try:
        event = json.loads(text)
    except json.JSONDecodeError as exc:
        raise WebhookRejected(f"malformed body: not JSON ({exc.msg})") from None
    if (
        not isinstance(event, dict)
        or not isinstance(event.get("id"), str)
        or not isinstance(event.get("type"), str)
        or not isinstance(event.get("data"), dict)
        or not isinstance(event["data"].get("object"), dict)
    ):
        raise WebhookRejected("malformed body: not a Stripe event (id, type, data.object)")
    return event


@dataclass(frozen=True)
class Delivery:
    """What one webhook delivery came to: the answer for Stripe and the metrics' outcome."""

    status: int
    body: dict[str, Any]
    #: ``queued``, ``ignored``, ``duplicate``, a rejection's outcome, or ``db_error``.
    outcome: str
    #: The verified event, when it was recorded as queued (to be processed).
    event: dict[str, Any] | None = None


async def receive(
    payload: bytes,
    signature_header: str | None,
    secrets: Sequence[str],
    accept: Callable[[dict[str, Any]], Awaitable[str]],
) -> Delivery:
    """Verify one delivery and record it with ``accept``; say what to answer.

    Shared by the service's webhook handler and the webhook intake process
    (:mod:`hub.billing.intake`), so both answer Stripe alike. A forged, stale or malformed
    delivery is 400 with the reason; an event the database could not record is 500, so Stripe
    delivers it again (nothing is acknowledged before its commit).
    """
    try:
        event = verify_event(payload, signature_header, secrets)
    except WebhookRejected as exc:
        log.warning("webhook rejected", extra={"reason": exc.reason, "outcome": "rejected"})
        return Delivery(400, {"error": exc.reason}, rejected_outcome(exc.reason))
    try:
        status = await accept(event)
    except SQLAlchemyError:
        log.exception("webhook not recorded", extra={"event": event["id"], "outcome": "db_error"})
        return Delivery(500, {"error": "the event could not be recorded; deliver it again"},
                        "db_error")  # fmt: skip
    # Who and what course are known once the object is re-fetched (the payload is not
    # trusted); the queue logs that line.
    log.info(
        "stripe event received",
        extra={"event": event["id"], "type": event["type"], "outcome": status},
    )
    return Delivery(200, {"status": status}, status, event if status == "queued" else None)
