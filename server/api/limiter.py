"""Failed-authentication limiter per client address (sliding window)."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable


class FailureLimiter:
    """Allows `limit` failures per `window` seconds per client; beyond that, `retry_after` says how long to wait."""

    def __init__(
        self,
        limit: int = 10,
        window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = 4096,
    ) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self.max_clients = max_clients
        self._fails: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, client: str) -> float:
        """Seconds until `client` may try again (0 if it may now)."""
        now = self.clock()
        with self._lock:
            fails = self._fails.get(client)
            if not fails:
                return 0.0
            while fails and fails[0] <= now - self.window:
                fails.popleft()
            if len(fails) < self.limit:
                return 0.0
            return fails[0] + self.window - now

    def failed(self, client: str) -> None:
        """Record one failed attempt."""
        now = self.clock()
        with self._lock:
            if client not in self._fails and len(self._fails) >= self.max_clients:
                # Bound memory under a spray of addresses: forget the stalest client.
                stalest = min(self._fails, key=lambda c: self._fails[c][-1] if self._fails[c] else 0.0)
                del self._fails[stalest]
            self._fails.setdefault(client, deque(maxlen=self.limit)).append(now)
