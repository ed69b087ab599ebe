"""Signed, expiring tokens for the links in mail.

A token is ``<payload>.<signature>``: the payload is URL-safe base64 of a small JSON object
with the time it was made (``t``), the signature an HMAC-SHA256 of it under a key derived from
``LEARNHUB_EMAIL_SECRET`` *and the purpose*, so a verification token never works as a reset
token. Nothing is stored: expiry is checked from ``t``, and a password-reset token is made
single-use by signing a fingerprint of the password hash it may replace (the first reset
changes the hash, so the same link is refused afterwards).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from typing import Any, Literal

from hub.errors import LearnHubError

Purpose = Literal["verify", "reset", "unsubscribe"]


class TokenRefused(LearnHubError):
    """A link's token is not valid; :attr:`reason` is ``expired`` or ``invalid``."""

    def __init__(self, reason: Literal["expired", "invalid"]) -> None:
        super().__init__(f"token {reason}")
        self.reason = reason


def _key(secret: str, purpose: Purpose) -> bytes:
    return hmac.new(secret.encode(), f"learnhub-mail:{purpose}".encode(), hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(
    secret: str, purpose: Purpose, payload: dict[str, Any], *, now: float | None = None
) -> str:
    """A token for ``purpose`` carrying ``payload`` (JSON-able), made at ``now``."""
    body = {**payload, "t": int(time.time() if now is None else now)}
    data = _b64(json.dumps(body, separators=(",", ":"), sort_keys=True).encode())
    mac = hmac.new(_key(secret, purpose), data.encode("ascii"), hashlib.sha256).digest()
    return f"{data}.{_b64(mac)}"


def verify(
    secret: str,
    purpose: Purpose,
    token: str,
    *,
    max_age_seconds: int | None,
    now: float | None = None,
) -> dict[str, Any]:
    """The payload of a valid ``token``; raises :class:`TokenRefused` otherwise.

    The signature is compared in constant time before anything in the payload is trusted.
    """
    data, dot, mac = token.partition(".")
    if not dot or len(token) > 4096:
        raise TokenRefused("invalid")
    try:
        given = _unb64(mac)
        expected = hmac.new(_key(secret, purpose), data.encode("ascii"), hashlib.sha256).digest()
        if not hmac.compare_digest(given, expected):
            raise TokenRefused("invalid")
        payload = json.loads(_unb64(data))
    except (binascii.Error, ValueError, UnicodeError):
        raise TokenRefused("invalid") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("t"), int):
        raise TokenRefused("invalid")
    age = (time.time() if now is None else now) - payload["t"]
    if max_age_seconds is not None and (age > max_age_seconds or age < -60):
        raise TokenRefused("expired")
    return payload


def password_fingerprint(secret: str, password_hash: bytes) -> str:
    """A short keyed digest of a stored password hash: binds a reset link to the password it
    replaces without putting the hash itself in a mail."""
    return _b64(hmac.new(_key(secret, "reset"), bytes(password_hash), hashlib.sha256).digest()[:16])
