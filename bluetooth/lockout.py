"""Failed-PoP limiter: after `limit` failures within `window` seconds, handshakes are refused (pure logic)."""

from __future__ import annotations

import math
from collections import deque


class Lockout:
    """Counts failures in a sliding window; global, because a guesser can simply reconnect."""

    def __init__(self, limit: int = 5, window: float = 300.0) -> None:
        self.limit = limit
        self.window = window
        self._failures: deque[float] = deque()

    def _trim(self, now: float) -> None:
        while self._failures and self._failures[0] <= now - self.window:
            self._failures.popleft()

    def failed(self, now: float) -> None:
        """Record one failure at `now`."""
        self._trim(now)
        self._failures.append(now)

    def retry_in(self, now: float) -> int:
        """Seconds until a handshake is allowed again (0 = allowed now)."""
        self._trim(now)
        if len(self._failures) < self.limit:
            return 0
        # Allowed again once enough of the oldest failures left the window.
        oldest_that_must_expire = self._failures[len(self._failures) - self.limit]
        return max(1, math.ceil(oldest_that_must_expire + self.window - now))
