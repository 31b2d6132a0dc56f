"""Injected time: monotonic for scheduling, wall time only for timestamps."""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    """What the engine needs to know about time."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards (scheduling)."""
        ...

    def time(self) -> float:
        """Wall-clock seconds since the epoch (timestamps only)."""
        ...


class SystemClock:
    """The real clocks of the machine."""

    monotonic = staticmethod(time.monotonic)
    time = staticmethod(time.time)


class FakeClock:
    """A clock that moves only when a test says so (like trio.testing.MockClock)."""

    def __init__(self, start: float = 1000.0, wall: float = 1_700_000_000.0) -> None:
        self._now = start
        self._wall_offset = wall - start
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        """Current fake monotonic time."""
        return self._now

    def time(self) -> float:
        """Current fake wall time, moving in step with monotonic time."""
        return self._now + self._wall_offset

    def advance(self, seconds: float) -> None:
        """Move time forward; never backwards."""
        if seconds < 0:
            raise ValueError("a clock does not go backwards")
        with self._lock:
            self._now += seconds

    def set(self, when: float) -> None:
        """Jump to an absolute monotonic time (not earlier than now)."""
        with self._lock:
            if when < self._now:
                raise ValueError("a clock does not go backwards")
            self._now = when
