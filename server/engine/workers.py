"""A bounded pool of daemon worker threads for blocking I/O; results are handed back, never lost."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger("ohm.engine.workers")


class PoolFull(RuntimeError):
    """The worker pool already holds its maximum of pending jobs."""


class PoolClosed(RuntimeError):
    """The worker pool is shutting down and takes no new jobs."""


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """What a blocking job produced: a value or the exception it raised."""

    value: T | None = None
    error: BaseException | None = None
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        """True when the job returned normally."""
        return self.error is None

    def unwrap(self) -> T:
        """The value, or the job's exception raised again."""
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]


Job = tuple[Callable[[], Any], Callable[[Outcome[Any]], None]]


class WorkerPool:
    """At most `max_workers` threads run jobs; at most `max_pending` wait or run at once.

    Threads are daemons started on demand, so a job stuck in I/O never holds up exit
    past the engine's shutdown deadline.
    """

    def __init__(self, max_workers: int = 4, max_pending: int = 1024, name: str = "ohm-worker") -> None:
        if max_workers < 1 or max_pending < 1:
            raise ValueError("a pool needs at least one worker and one pending slot")
        self.max_workers = max_workers
        self.max_pending = max_pending
        self._name = name
        self._jobs: deque[Job] = deque()
        self._cond = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._busy = 0
        self._closed = False
        self.completed = 0
        self.rejected = 0

    def submit(self, fn: Callable[[], Any], done: Callable[[Outcome[Any]], None]) -> None:
        """Queue `fn`; `done(outcome)` is called from the worker thread when it finishes."""
        with self._cond:
            if self._closed:
                self.rejected += 1
                raise PoolClosed("worker pool is shutting down")
            if len(self._jobs) + self._busy >= self.max_pending:
                self.rejected += 1
                raise PoolFull(f"worker pool full ({self.max_pending} jobs pending)")
            self._jobs.append((fn, done))
            if self._idle:
                self._cond.notify()
            elif len(self._threads) < self.max_workers:
                thread = threading.Thread(target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True)
                self._threads.append(thread)
                thread.start()

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._jobs and not self._closed:
                    self._idle += 1
                    self._cond.wait()
                    self._idle -= 1
                if not self._jobs:
                    return
                fn, done = self._jobs.popleft()
                self._busy += 1
            start = time.perf_counter()
            try:
                outcome: Outcome[Any] = Outcome(value=fn(), elapsed=time.perf_counter() - start)
            except BaseException as exc:  # noqa: BLE001 - handed back to the caller, never swallowed
                outcome = Outcome(error=exc, elapsed=time.perf_counter() - start)
            try:
                done(outcome)
            except Exception:  # a broken callback must not cost the pool a thread
                log.exception("worker completion callback failed")
            finally:
                # Let go of the job before waiting for the next: an idle worker holding the last closure kept
                # what it captured alive (an old MQTT client and its sockets, until the worker's next job).
                fn = done = outcome = None  # type: ignore[assignment]
                with self._cond:
                    self._busy -= 1
                    self.completed += 1
                    self._cond.notify_all()

    def join_idle(self, timeout: float | None = None) -> bool:
        """Wait until no job is queued or running; True if that happened in time."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._jobs or self._busy:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def shutdown(self, timeout: float) -> list[Job]:
        """Take no new jobs, let running ones finish within `timeout`; return jobs never started."""
        with self._cond:
            self._closed = True
            never_started = list(self._jobs)
            self._jobs.clear()
            self._cond.notify_all()
        self.join_idle(timeout)
        return never_started

    def stats(self) -> dict[str, int]:
        """Current load of the pool."""
        with self._cond:
            return {
                "threads": len(self._threads),
                "busy": self._busy,
                "queued": len(self._jobs),
                "completed": self.completed,
                "rejected": self.rejected,
                "max_workers": self.max_workers,
                "max_pending": self.max_pending,
            }
