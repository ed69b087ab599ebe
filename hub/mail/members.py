"""A member's mail address (counted only once verified), mail language and notice opt-outs.

The address a member gives at sign-up is stored unverified; until the link in the
verification mail is followed, no notice and no password reset goes to it.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from hub.store import Database, MemberEmail, utcnow

#: Notice kinds a member can turn off, in the order the settings page lists them.
NOTICE_KINDS: tuple[str, ...] = ("feedback", "answer", "announcement", "deadline")


@dataclass(frozen=True)
class Recipient:
    """Where and how to mail one member."""

    username: str
    address: str
    verified: bool
    language: str
    opt_outs: frozenset[str]

    def wants(self, kind: str) -> bool:
        """Whether this member gets notices of ``kind`` (verified address, not opted out)."""
        return self.verified and kind not in self.opt_outs


def normalize_address(address: str) -> str:
    """The form addresses are compared in: trimmed, the domain lower-cased."""
    local, _, domain = address.strip().rpartition("@")
    return f"{local}@{domain.lower()}"


def _recipient(row: MemberEmail) -> Recipient:
    outs = frozenset(kind for kind in row.opt_outs.split(",") if kind)
    return Recipient(row.username, row.address, row.verified_at is not None, row.language, outs)


def recipient(session: Session, username: str) -> Recipient | None:
    """The member's mail details, or None when they gave no address."""
    row = session.get(MemberEmail, username)
    return _recipient(row) if row is not None else None


def lookup(db: Database, username: str) -> Recipient | None:
    """:func:`recipient` in its own transaction."""
    with db.transaction() as session:
        return recipient(session, username)


def record_address(db: Database, username: str, address: str, language: str) -> None:
    """Store ``address`` for ``username``, unverified (replacing any earlier one)."""
    with db.transaction() as session:
        row = session.get(MemberEmail, username)
        if row is None:
            row = MemberEmail(username=username, opt_outs="")
            session.add(row)
        row.address = normalize_address(address)
        row.verified_at = None
        row.language = language
        row.updated_at = utcnow()


def mark_verified(db: Database, username: str, address: str) -> bool:
    """Mark ``address`` verified for ``username`` if it is still their address."""
    with db.transaction() as session:
        row = session.get(MemberEmail, username)
        if row is None or row.address != normalize_address(address):
            return False
        if row.verified_at is None:
            row.verified_at = utcnow()
            row.updated_at = row.verified_at
        return True


def username_for(db: Database, address: str) -> str | None:
    """The member whose *verified* address is ``address``, or None."""
    with db.transaction() as session:
        name = session.scalar(
            sa.select(MemberEmail.username)
            .where(
                MemberEmail.address == normalize_address(address),
                MemberEmail.verified_at.is_not(None),
            )
            .order_by(MemberEmail.verified_at)
            .limit(1)
        )
        return str(name) if name is not None else None


def set_preferences(
    db: Database, username: str, *, opt_outs: set[str], language: str | None = None
) -> bool:
    """Save the member's opt-outs (unknown kinds ignored) and language; False if no address."""
    with db.transaction() as session:
        row = session.get(MemberEmail, username)
        if row is None:
            return False
        row.opt_outs = ",".join(kind for kind in NOTICE_KINDS if kind in opt_outs)
        if language is not None:
            row.language = language
        row.updated_at = utcnow()
        return True


def opt_out(db: Database, username: str, kind: str) -> bool:
    """Turn off notices of ``kind`` for ``username`` (the unsubscribe link)."""
    found = lookup(db, username)
    if found is None or kind not in NOTICE_KINDS:
        return False
    return set_preferences(db, username, opt_outs=set(found.opt_outs) | {kind})
