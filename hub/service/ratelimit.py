"""Per-person request limits of the service's costly or spammable routes: token buckets.

Each (action, who) pair has a bucket holding up to ``requests`` tokens that refills at
``requests / seconds`` tokens a second; a request takes one token or is refused with the
seconds until the next token (the ``Retry-After`` of a 429). "Who" is the signed-in Hub
username, or the client address for anonymous requests. The buckets live in this process's
memory: one service process serves every page, and a restart only forgets recent requests.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

#: Buckets kept before full (idle) ones are forgotten; bounds memory under many callers.
MAX_BUCKETS = 10_000


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token buckets per ``(action, who)``; ``limits`` maps an action to (requests, seconds)."""

    def __init__(
        self,
        limits: dict[str, tuple[int, int]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = dict(limits)
        self.clock = clock
        self._buckets: dict[tuple[str, str], _Bucket] = {}

    def take(self, action: str, who: str) -> float:
        """Take one token for ``who`` doing ``action``: 0 when allowed, else seconds to wait."""
        capacity, seconds = self.limits[action]
        rate = capacity / seconds
        now = self.clock()
        bucket = self._buckets.get((action, who))
        if bucket is None:
            if len(self._buckets) >= MAX_BUCKETS:
                self._forget_full(now)
            bucket = self._buckets[(action, who)] = _Bucket(float(capacity), now)
        bucket.tokens = min(float(capacity), bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0.0
        return (1 - bucket.tokens) / rate

    def _forget_full(self, now: float) -> None:
        """Drop buckets that have refilled: forgetting them changes no answer."""
        for key, bucket in list(self._buckets.items()):
            capacity, seconds = self.limits[key[0]]
            if bucket.tokens + (now - bucket.updated) * capacity / seconds >= capacity:
                del self._buckets[key]


def retry_after(wait: float) -> int:
    """Whole seconds for a ``Retry-After`` header (at least 1)."""
    return max(1, math.ceil(wait))
