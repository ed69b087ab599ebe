"""Queueing mail: a row in ``mail_outbox``, written in the caller's transaction.

Nothing else sends mail: the LearnHub service's sender (:mod:`hub.mail.sender`) reads the rows
that are due, words them (:mod:`hub.mail.compose`) and hands them to the SMTP server.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from hub.mail import members, tokens
from hub.store import Database, OutboxMessage, utcnow

log = logging.getLogger("learnhub.mail")

#: Every kind of mail: two about the account, then the notices (hub.mail.members.NOTICE_KINDS
#: plus ``accepted``, which shares the ``answer`` opt-out).
KINDS = ("verify", "reset", "feedback", "answer", "accepted", "announcement", "deadline")
#: The opt-out that covers each notice kind (the account mails have none).
OPT_OUT_OF = {
    "feedback": "feedback",
    "answer": "answer",
    "accepted": "answer",
    "announcement": "announcement",
    "deadline": "deadline",
}


def enqueue(
    session: Session,
    *,
    kind: str,
    recipient: str,
    username: str | None,
    params: dict[str, Any],
    dedupe_key: str | None = None,
) -> bool:
    """Queue one mail in ``session``'s transaction; False when ``dedupe_key`` was queued before.

    ``params`` are what :func:`hub.mail.compose.compose` needs for ``kind`` (JSON-able).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown mail kind {kind!r}; one of {', '.join(KINDS)}")
    if dedupe_key is not None:
        seen = session.scalar(
            sa.select(OutboxMessage.id).where(OutboxMessage.dedupe_key == dedupe_key)
        )
        if seen is not None:
            return False
    now = utcnow()
    session.add(
        OutboxMessage(
            kind=kind,
            recipient=recipient,
            username=username,
            params=json.dumps(params, sort_keys=True),
            dedupe_key=dedupe_key,
            state="queued",
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
    )
    # No address in the log: the user and the kind say enough.
    log.info("mail queued", extra={"user": username, "kind": kind, "outcome": "queued"})
    return True


def queue_verification(
    db: Database, *, secret: str, hours: int, username: str, address: str, lang: str
) -> None:
    """Store ``address`` unverified for ``username`` and queue the mail that confirms it
    (sign-up in the Hub, a new address on the mail settings page)."""
    members.record_address(db, username, address, lang)
    normalized = members.normalize_address(address)
    token = tokens.sign(secret, "verify", {"u": username, "a": normalized})
    with db.transaction() as session:
        enqueue(
            session,
            kind="verify",
            recipient=normalized,
            username=username,
            params={"token": token, "hours": hours, "lang": lang},
        )
