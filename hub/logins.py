"""Login back-off: how long a username or a client address must wait after failed logins.

Kept in the Hub's memory (JupyterHub is one process): a restart forgets it, which only gives an
attacker one more round of ``threshold`` guesses. Pure and clock-injectable, so it is tested
without a hub; `hub.auth` applies it per name and per address.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

#: Past this many remembered keys, quiet ones are dropped (a spray of random names must not
#: grow the table without bound).
_PRUNE_ABOVE = 10_000


@dataclass
class _Failures:
    count: int = 0
    last: float = 0.0
    locked_until: float = 0.0


class LoginThrottle:
    """Failed-login counts per key with exponential back-off.

    After ``threshold`` failures within ``max_seconds`` of each other, the key is locked for
    ``base_seconds``; every further failure doubles that, up to ``max_seconds``. Attempts made
    while locked are refused before any password is checked, and do not count, so a locked
    name costs the Hub nothing.
    """

    def __init__(
        self,
        threshold: int,
        base_seconds: float,
        max_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = threshold
        self.base_seconds = base_seconds
        self.max_seconds = max_seconds
        self._clock = clock
        self._keys: dict[str, _Failures] = {}

    def wait(self, key: str) -> float:
        """Seconds until ``key`` may try again; 0 when it may try now."""
        record = self._keys.get(key)
        if record is None:
            return 0.0
        return max(0.0, record.locked_until - self._clock())

    def count_attempt(self, key: str) -> float:
        """Count an attempt for ``key`` as failed until :meth:`forgive` says otherwise.

        Counting *before* the password is checked (which takes a while, off the event loop)
        means a burst of parallel guesses cannot all slip in before the first failure is
        recorded. Returns how long ``key`` is now locked (0: not locked).
        """
        now = self._clock()
        record = self._keys.get(key)
        if record is None or now - record.last > self.max_seconds:
            record = self._keys[key] = _Failures()
        record.count += 1
        record.last = now
        if record.count >= self.threshold:
            backoff = self.base_seconds * 2 ** min(record.count - self.threshold, 32)
            record.locked_until = now + min(self.max_seconds, backoff)
        if len(self._keys) > _PRUNE_ABOVE:
            self._prune(now)
        return max(0.0, record.locked_until - now)

    def forgive(self, key: str) -> None:
        """Take back one counted attempt of ``key`` (it turned out to be a correct login)."""
        record = self._keys.get(key)
        if record is None:
            return
        record.count = max(0, record.count - 1)
        if record.count < self.threshold:
            record.locked_until = 0.0

    def forget(self, key: str) -> None:
        """Forget every failure of ``key`` (a correct password for this username)."""
        self._keys.pop(key, None)

    def _prune(self, now: float) -> None:
        for key in [k for k, r in self._keys.items() if now - r.last > self.max_seconds]:
            del self._keys[key]
