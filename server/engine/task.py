"""Tasks: small non-blocking units of work the engine runs in priority order."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from enum import Enum, IntEnum
from typing import Union


class TaskClass(IntEnum):
    """What a task is for; the gateway state decides what priority each class gets."""

    CONTROL = 0
    PROVISIONING = 1
    HARVEST = 2
    UPLINK_LIVE = 3
    BACKLOG = 4
    HOUSEKEEPING = 5


class Duplicate(Enum):
    """What submitting a task whose name is already queued or running does."""

    REPLACE = "replace"  # the newest wins: the older one is cancelled
    DROP = "drop"  # the older one wins: the new one is ignored
    ALLOW = "allow"  # both run


RunResult = Union[None, "Task", Iterable["Task"]]


class Task:
    """A unit of work: `run(now)` returns nothing, itself (rescheduled) or follow-up tasks.

    Subclass and override `run`, or pass `fn`. `due` is monotonic time; None means "now".
    `interval` marks a periodic task: on failure it is retried with jittered exponential
    backoff between `retry_base` and `retry_cap` seconds instead of being dropped.
    Pass everything after `fn` by keyword.
    """

    __slots__ = (
        "_entry",
        "_running",
        "budget",
        "cancelled",
        "cls",
        "due",
        "failures",
        "fn",
        "interval",
        "kind",
        "name",
        "on_duplicate",
        "retry_base",
        "retry_cap",
    )

    def __init__(
        self,
        fn: Callable[[float], RunResult] | None = None,
        # No `*` marker on purpose: CPython fills missing keyword-only arguments with one dict
        # lookup each, positional ones from a tuple; measured ~13% of a Task() call on 3.11.
        kind: str | None = None,
        cls: TaskClass = TaskClass.HOUSEKEEPING,
        name: str | None = None,
        on_duplicate: Duplicate = Duplicate.REPLACE,
        due: float | None = None,
        interval: float | None = None,
        budget: float = 0.05,
        retry_base: float = 1.0,
        retry_cap: float = 60.0,
    ) -> None:
        if interval is not None and interval <= 0:
            raise ValueError("interval must be positive")
        if budget <= 0:
            raise ValueError("budget must be positive")
        self.fn = fn
        self.kind = kind or name or _qualname(fn) or type(self).__name__
        self.cls = cls
        self.name = name
        self.on_duplicate = on_duplicate
        self.due: float = due  # type: ignore[assignment]  # the engine fills None in
        self.interval = interval
        self.budget = budget
        self.retry_base = retry_base
        self.retry_cap = retry_cap
        self.failures = 0
        self.cancelled = False
        self._entry: int | None = None  # the seq it waits under in the engine, None when not queued
        self._running = False

    def run(self, now: float) -> RunResult:
        """Do the work; must not block."""
        if self.fn is None:
            raise NotImplementedError(f"{type(self).__name__} has neither fn nor run()")
        return self.fn(now)

    @property
    def queued(self) -> bool:
        """True while the task waits in the engine's queue."""
        return self._entry is not None

    def __repr__(self) -> str:
        return f"<Task {self.kind} cls={self.cls.name} due={self.due}>"


class Periodic(Task):
    """Runs `fn(now)` every `interval` seconds, keeping its phase; skips missed slots."""

    __slots__ = ("skipped",)

    def __init__(self, interval: float, fn: Callable[[float], RunResult], **kw: object) -> None:
        super().__init__(fn, interval=interval, **kw)  # type: ignore[arg-type]
        self.skipped = 0

    def run(self, now: float) -> RunResult:
        """Run the function, then schedule the next slot after `now`."""
        follow = self.fn(now) if self.fn is not None else None
        assert self.interval is not None
        self.due += self.interval
        if self.due <= now:
            missed = int((now - self.due) // self.interval) + 1
            self.skipped += missed
            self.due += missed * self.interval
        if follow is None:
            return self
        if isinstance(follow, Task):
            return (self, follow)
        return (self, *follow)


def _qualname(fn: object) -> str | None:
    return getattr(fn, "__qualname__", None) if fn is not None else None
