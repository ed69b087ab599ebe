"""bcrypt off the Hub's event loop: the one place the Hub's handlers hash and check passwords.

bcrypt takes a few hundred milliseconds of CPU by design; on the event loop that stalls every
request the Hub serves, so both run in a worker thread (bcrypt releases the GIL). Sign-up, login,
the password reset and the change-password page all come here.
"""

from __future__ import annotations

import asyncio
import logging

import bcrypt

log = logging.getLogger("learnhub.auth")


async def hash_password(password: str) -> bytes:
    """A new bcrypt hash of ``password`` (which fits bcrypt's 72 bytes: callers check)."""
    return await asyncio.to_thread(bcrypt.hashpw, password.encode("utf-8"), bcrypt.gensalt())


async def password_matches(password: str, stored: bytes) -> bool:
    """Whether ``password`` is the one ``stored`` hashes; False (and an error logged) for a
    stored value that is not a bcrypt hash."""
    try:
        return await asyncio.to_thread(
            bcrypt.checkpw, password.encode("utf-8", "replace"), bytes(stored)
        )
    except ValueError:
        log.error("stored password hash is not a bcrypt hash; password refused")
        return False
