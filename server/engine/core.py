"""The priority task engine: a time-ordered queue of small non-blocking tasks run by one loop.

Tasks wait in a timer heap ordered by (due, priority, seq). When due they move, in due order,
to a ready heap ordered by (priority, seq), so when the loop falls behind what matters most
runs first and equals keep FIFO. The loop sleeps on a condition until the next due time or a
submission: no polling, and no wake-ups at all while nothing is due.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import random
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .clock import Clock, SystemClock
from .stats import KindStats, LatenessWindow
from .task import Duplicate, Periodic, RunResult, Task, TaskClass
from .workers import Outcome, PoolClosed, PoolFull, WorkerPool

log = logging.getLogger("ohm.engine")

INF = float("inf")
NEW, RUNNING, STOPPING, STOPPED = "new", "running", "stopping", "stopped"


class EngineStopped(RuntimeError):
    """The engine is stopping or stopped and takes no new tasks."""


@dataclass(frozen=True)
class Policy:
    """Priority per task class (lower runs first) and classes held back entirely."""

    priorities: Mapping[TaskClass, int]
    paused: frozenset[TaskClass] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        missing = [c.name for c in TaskClass if c not in self.priorities]
        if missing:
            raise ValueError(f"policy gives no priority to {', '.join(missing)}")


DEFAULT_POLICY = Policy({c: int(c) for c in TaskClass})


class Engine:
    """Runs tasks in time and priority order on one thread; see the module docstring."""

    def __init__(
        self,
        clock: Clock | None = None,
        *,
        workers: int = 4,
        max_pending: int = 1024,
        rng: random.Random | None = None,
        policy: Policy = DEFAULT_POLICY,
        lateness_window: int = 4096,
    ) -> None:
        self.clock = clock or SystemClock()
        self._mono = self.clock.monotonic
        # `with self._lock` is the fast path; the condition wraps the same lock for sleeping.
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._timers: list[list[Any]] = []  # [due, prio, seq, task]
        self._ready: list[list[Any]] = []  # [prio, seq, task]: seq is the order tasks became ready
        self._held: dict[TaskClass, list[list[Any]]] = {}
        self._named: dict[str, list[Task]] = {}
        self._seq = itertools.count()
        self._live = 0
        self._policy = policy
        self._prio = [policy.priorities[c] for c in TaskClass]
        self._paused = policy.paused
        # Indexed by class: hashing an Enum for a set lookup is a Python call on the hot path.
        self._holds = [c in policy.paused for c in TaskClass]
        self._sleeping_until: float | None = None
        self._state = NEW
        self._loop_thread: threading.Thread | None = None
        self._stopped = threading.Event()
        self._stop_deadline = INF
        self._shutdown_hooks: list[tuple[str, Callable[[], None]]] = []
        self._rng = rng or random.Random()
        self.pool = WorkerPool(max_workers=workers, max_pending=max_pending)
        self._kinds: dict[str, KindStats] = {}
        self._lateness = LatenessWindow(lateness_window)
        self._failing: dict[str, int] = {}
        self._overrun_logged: set[str] = set()
        self.failures = 0
        self.overruns = 0
        self.abandoned = 0
        self.started_at = self._mono()

    # ---- submitting -------------------------------------------------------------------

    def submit(self, task: Task, *, delay: float | None = None) -> Task:
        """Queue `task` (thread-safe); returns the task that will run (the older one on DROP)."""
        with self._lock:
            if self._state in (STOPPING, STOPPED):
                raise EngineStopped(f"engine is {self._state}; {task.kind} not accepted")
            now = self._mono()
            if delay is not None:
                task.due = now + delay
            elif task.due is None:
                task.due = now
            if task.name is None and task._entry is None and not task._running:
                task.cancelled = False  # the common case: nothing to de-duplicate or move
                self._enqueue(task, now)
                return task
            return self._push(task, now)

    def call_soon(
        self,
        fn: Callable[[float], RunResult],
        *,
        kind: str | None = None,
        cls: TaskClass = TaskClass.HOUSEKEEPING,
        **kw: Any,
    ) -> Task:
        """Run `fn(now)` as soon as its priority allows."""
        return self.submit(Task(fn, kind=kind, cls=cls, **kw) if kw else Task(fn, kind=kind, cls=cls))

    def call_later(self, delay: float, fn: Callable[[float], RunResult], **kw: Any) -> Task:
        """Run `fn(now)` after `delay` seconds."""
        return self.submit(Task(fn, **kw), delay=delay)

    def every(self, interval: float, fn: Callable[[float], RunResult], *, first: float = 0.0, **kw: Any) -> Periodic:
        """Run `fn(now)` every `interval` seconds, the first time after `first` seconds."""
        task = Periodic(interval, fn, **kw)
        return self.submit(task, delay=first)  # type: ignore[return-value]

    def cancel(self, target: Task | str) -> int:
        """Cancel a task, or every queued or running task of a name; returns how many."""
        with self._lock:
            if isinstance(target, Task):
                tasks = [target] if (target.queued or target._running) and not target.cancelled else []
            else:
                tasks = list(self._named.get(target, ()))
            for task in tasks:
                self._cancel_locked(task)
            return len(tasks)

    def offload(
        self,
        fn: Callable[[], Any],
        then: Callable[[Outcome[Any]], RunResult] | None = None,
        *,
        kind: str,
        cls: TaskClass = TaskClass.HOUSEKEEPING,
        lane: Lane | None = None,
    ) -> None:
        """Run blocking `fn()` in a worker; `then(outcome)` runs later as a task of class `cls`.

        A full pool or a closed engine is reported to `then` as an error outcome, so
        nothing is silently lost. Without `then`, an error is counted as a failure of `kind`.
        """

        def done(outcome: Outcome[Any]) -> None:
            self._record_io(kind, outcome)
            if then is None and outcome.ok:
                return
            run = (lambda now: then(outcome)) if then is not None else (lambda now: outcome.unwrap())
            try:
                self.submit(Task(run, kind=kind, cls=cls))
            except EngineStopped:
                with self._lock:
                    self.abandoned += 1
                log.debug("%s finished after shutdown began; result dropped", kind)

        if lane is not None:
            lane.submit(fn, done)
            return
        try:
            self.pool.submit(fn, done)
        except (PoolFull, PoolClosed) as exc:
            done(Outcome(error=exc))

    def lane(self, name: str, *, gap: float = 0.0, max_pending: int = 256, cls: TaskClass = TaskClass.HARVEST) -> Lane:
        """A lane serialises jobs on one I/O resource, `gap` seconds apart."""
        return Lane(self, name, gap=gap, max_pending=max_pending, cls=cls)

    def on_shutdown(self, name: str, fn: Callable[[], None]) -> None:
        """Call `fn()` on shutdown, after the loop stopped, in registration order."""
        self._shutdown_hooks.append((name, fn))

    def set_policy(self, policy: Policy) -> None:
        """Apply new priorities and paused classes to queued and future tasks."""
        with self._lock:
            self._policy = policy
            self._prio = prio = [policy.priorities[c] for c in TaskClass]
            self._paused = policy.paused
            self._holds = [c in policy.paused for c in TaskClass]
            for entry in self._timers:
                if entry[3] is not None:
                    entry[1] = prio[entry[3].cls]
            heapq.heapify(self._timers)
            ready = self._ready + [e for held in self._held.values() for e in held]
            self._ready, self._held = [], {}
            for entry in ready:
                task = entry[-1]
                if task is None:
                    continue
                entry[0] = prio[task.cls]
                if self._holds[task.cls]:
                    self._held.setdefault(task.cls, []).append(entry)
                else:
                    self._ready.append(entry)
            heapq.heapify(self._ready)
            self._cond.notify()

    @property
    def policy(self) -> Policy:
        """The priorities in force."""
        return self._policy

    # ---- running ----------------------------------------------------------------------

    def run(self) -> None:
        """Run tasks until `stop()`; then run shutdown hooks and stop the workers."""
        with self._lock:
            if self._state != NEW:
                raise RuntimeError(f"engine already {self._state}")
            self._state = RUNNING
            self._loop_thread = threading.current_thread()
        try:
            self._loop()
        finally:
            self._shutdown()

    def _loop(self) -> None:
        cond = self._cond
        mono = self._mono
        cond.acquire()
        try:
            while self._state == RUNNING:
                now = mono()
                entry = self._pop_ready(now)
                if entry is None:
                    timeout = self._next_due() - now if self._timers else None
                    self._sleeping_until = INF if timeout is None else now + timeout
                    cond.wait(timeout)
                    self._sleeping_until = None
                    continue
                # The hot path, inlined from _execute(): one lock round trip and two clock reads a task.
                task: Task = entry[2]
                due = task.due
                cond.release()
                start = mono()
                try:
                    # A plain Task calls its function directly; subclasses go through run().
                    result = task.fn(start) if type(task) is Task and task.fn is not None else task.run(start)
                    error = None
                except Exception as exc:  # noqa: BLE001 - supervision: counted, logged once, retried
                    result, error = None, exc
                except BaseException:
                    cond.acquire()
                    raise
                end = mono()
                cond.acquire()
                self._finish(task, due, start, end, result, error)
        finally:
            cond.release()

    def run_pending(self, limit: int = 100_000) -> int:
        """Run every task due now, without waiting (for a fake clock); returns how many ran."""
        ran = 0
        while ran < limit:
            with self._lock:
                entry = self._pop_ready(self._mono())
            if entry is None:
                return ran
            outcome = self._execute(entry)
            with self._lock:
                self._finish(*outcome)
            ran += 1
        raise RuntimeError(f"more than {limit} tasks due at once: does a task reschedule itself without moving due?")

    def advance(self, seconds: float) -> int:
        """Move a FakeClock forward, running each task at its due time; returns how many ran."""
        set_time = getattr(self.clock, "set", None)
        if set_time is None:
            raise TypeError("advance() needs a clock with set(), such as FakeClock")
        target = self._mono() + seconds
        ran = self.run_pending()
        while True:
            with self._lock:
                nxt = self._next_due() if self._timers else INF
            if nxt > target:
                break
            set_time(max(nxt, self._mono()))
            ran += self.run_pending()
        if self._mono() < target:
            set_time(target)
        return ran + self.run_pending()

    def start_thread(self, name: str = "ohm-engine") -> threading.Thread:
        """Run the engine on a thread of its own (tests and embedding)."""
        thread = threading.Thread(target=self.run, name=name, daemon=True)
        thread.start()
        return thread

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the loop to stop; shutdown hooks and workers get `timeout` seconds in all."""
        with self._lock:
            if self._state == NEW:
                self._state = STOPPED
                self._stopped.set()
                return
            if self._state == RUNNING:
                self._state = STOPPING
                self._stop_deadline = self._mono() + timeout
                self._cond.notify_all()

    def wait_stopped(self, timeout: float | None = None) -> bool:
        """Wait until shutdown is complete; True if it finished in time."""
        return self._stopped.wait(timeout)

    @property
    def state(self) -> str:
        """new, running, stopping or stopped."""
        return self._state

    def _shutdown(self) -> None:
        try:
            for name, hook in self._shutdown_hooks:
                try:
                    hook()
                except Exception:
                    log.exception("shutdown step %s failed", name)
            remaining = max(0.0, self._stop_deadline - self._mono())
            never_started = self.pool.shutdown(min(remaining, 5.0) if remaining != INF else 5.0)
            if never_started:
                log.info("shutdown: %d queued blocking jobs not started", len(never_started))
            if self.pool.stats()["busy"]:
                log.warning("shutdown: %d blocking jobs still running at the deadline", self.pool.stats()["busy"])
        finally:
            with self._lock:
                self._state = STOPPED
                dropped = self._live
            if dropped:
                log.info("shutdown: %d queued tasks not run", dropped)
            self._stopped.set()

    # ---- internals (called with the lock held unless noted) ----------------------------

    def _push(self, task: Task, now: float) -> Task:
        if task._running:
            raise ValueError(f"{task.kind} is running; return it from run() to reschedule it")
        name = task.name
        if task._entry is not None:  # already queued: move it
            task._entry[-1] = None
            task._entry = None
            self._live -= 1
        elif name is not None:
            existing = self._named.get(name)
            if existing:
                if task.on_duplicate is Duplicate.DROP:
                    return existing[0]
                if task.on_duplicate is Duplicate.REPLACE:
                    for old in list(existing):
                        self._cancel_locked(old)
            self._named.setdefault(name, []).append(task)
        task.cancelled = False
        self._enqueue(task, now)
        return task

    def _enqueue(self, task: Task, now: float) -> None:
        prio = self._prio[task.cls]
        seq = next(self._seq)
        due = task.due
        if due <= now:
            entry = [prio, seq, task]
            if self._holds[task.cls]:
                self._held.setdefault(task.cls, []).append(entry)
            else:
                heapq.heappush(self._ready, entry)
        else:
            entry = [due, prio, seq, task]
            heapq.heappush(self._timers, entry)
        task._entry = entry
        self._live += 1
        sleeping = self._sleeping_until
        if sleeping is not None and due < sleeping:
            self._cond.notify()

    def _pop_ready(self, now: float) -> list[Any] | None:
        timers, ready = self._timers, self._ready
        while timers and timers[0][0] <= now:
            _due, prio, _seq, task = heapq.heappop(timers)
            if task is None:
                continue
            entry = [prio, next(self._seq), task]  # a fresh seq: ready in due order
            task._entry = entry
            if self._holds[task.cls]:
                self._held.setdefault(task.cls, []).append(entry)
            else:
                heapq.heappush(ready, entry)
        while ready:
            entry = heapq.heappop(ready)
            task = entry[2]
            if task is not None:
                task._entry = None
                task._running = True
                self._live -= 1
                return entry
        return None

    def _next_due(self) -> float:
        timers = self._timers
        while timers and timers[0][3] is None:
            heapq.heappop(timers)
        return timers[0][0] if timers else INF

    def _execute(self, entry: list[Any]) -> tuple[Task, float, float, float, RunResult, Exception | None]:
        """Run one task; called without the lock."""
        task: Task = entry[2]
        due = task.due  # before run(): a periodic task moves its own due
        mono = self._mono
        start = mono()
        try:
            result = task.run(start)
            error = None
        except Exception as exc:  # noqa: BLE001 - supervision: counted, logged once, retried
            result, error = None, exc
        return task, due, start, mono(), result, error

    def _finish(
        self, task: Task, due: float, start: float, end: float, result: RunResult, error: Exception | None
    ) -> None:
        task._running = False
        kind = task.kind
        ks = self._kinds.get(kind)
        if ks is None:
            ks = self._kinds[kind] = KindStats()
        elapsed = end - start
        ks.runs += 1
        ks.total += elapsed
        if elapsed > ks.max:
            ks.max = elapsed
        self._lateness.add(start - due)
        if elapsed > task.budget:
            self._report_overrun(task, ks, elapsed)
        if error is not None:
            ks.failures += 1
            self._report_failure(task, error)
            if task.interval is not None and not task.cancelled:
                task.failures += 1
                task.due = end + self._backoff(task)
                self._enqueue(task, end)
            else:
                self._forget(task)
            return
        if task.failures or self._failing:
            self._report_recovery(task)
        if result is None:
            if task.name is not None:
                self._forget(task)
            return
        follow_ups: Iterable[Task] = (result,) if isinstance(result, Task) else result
        if not isinstance(follow_ups, Iterable):
            follow_ups = (follow_ups,)  # type: ignore[unreachable]
        kept = False
        for follow in follow_ups:
            if not isinstance(follow, Task):
                ks.failures += 1
                self._report_failure(task, TypeError(f"run() returned {follow!r}; expected None, Task or tasks"))
                continue
            if follow is task:
                kept = not task.cancelled
                if kept:
                    self._enqueue(task, end)
                continue
            if follow.due is None:
                follow.due = end
            try:
                self._push(follow, end)
            except ValueError:
                log.exception("%s returned an unusable follow-up %r", kind, follow)
        if not kept:
            self._forget(task)

    def _forget(self, task: Task) -> None:
        name = task.name
        if name is None:
            return
        same = self._named.get(name)
        if same and task in same:
            same.remove(task)
            if not same:
                del self._named[name]

    def _cancel_locked(self, task: Task) -> None:
        if task._entry is not None:
            task._entry[-1] = None
            task._entry = None
            self._live -= 1
        task.cancelled = True
        self._forget(task)

    def _backoff(self, task: Task) -> float:
        """Jittered exponential backoff: a random point in the upper half of base * 2^(n-1), capped."""
        ceiling = min(task.retry_cap, task.retry_base * 2 ** min(task.failures - 1, 32))
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    def _report_failure(self, task: Task, error: Exception) -> None:
        self.failures += 1
        key = task.name or task.kind
        count = self._failing.get(key, 0) + 1
        self._failing[key] = count
        if count == 1:
            log.error("task %s failed: %s", key, error, exc_info=error)
        else:
            log.debug("task %s failed again (%d in a row): %s", key, count, error)

    def _report_recovery(self, task: Task) -> None:
        key = task.name or task.kind
        count = self._failing.pop(key, 0)
        task.failures = 0
        if count:
            log.info("task %s recovered after %d failures", key, count)

    def _report_overrun(self, task: Task, ks: KindStats, elapsed: float) -> None:
        self.overruns += 1
        ks.overruns += 1
        if task.kind not in self._overrun_logged:
            self._overrun_logged.add(task.kind)
            log.warning(
                "task %s ran %.1f ms, over its %.1f ms budget (further overruns counted in stats)",
                task.kind,
                elapsed * 1000,
                task.budget * 1000,
            )

    def _record_io(self, kind: str, outcome: Outcome[Any]) -> None:
        """Count a blocking job's time under '<kind>[io]'; called from a worker thread."""
        with self._lock:
            key = kind + "[io]"
            ks = self._kinds.get(key)
            if ks is None:
                ks = self._kinds[key] = KindStats()
            ks.runs += 1
            ks.total += outcome.elapsed
            if outcome.elapsed > ks.max:
                ks.max = outcome.elapsed
            if not outcome.ok:
                ks.failures += 1

    # ---- reporting --------------------------------------------------------------------

    @property
    def tasks_run(self) -> int:
        """Tasks run so far (blocking jobs' own time is counted separately under '<kind>[io]')."""
        return sum(ks.runs for kind, ks in list(self._kinds.items()) if not kind.endswith("[io]"))

    def stats(self) -> dict[str, Any]:
        """Queue depth, lateness p50/p99, run time per task kind, failures, workers."""
        with self._lock:
            now = self._mono()
            lateness = self._lateness
            return {
                "state": self._state,
                "uptime_s": round(now - self.started_at, 3),
                "queue_depth": self._live,
                "ready": sum(1 for e in self._ready if e[-1] is not None),
                "held": sum(1 for held in self._held.values() for e in held if e[-1] is not None),
                "next_due_in_s": None if not self._timers else round(max(0.0, self._next_due() - now), 3),
                "tasks_run": self.tasks_run,
                "failures": self.failures,
                "overruns": self.overruns,
                "abandoned": self.abandoned,
                "failing": dict(self._failing),
                "lateness_ms": {
                    "p50": round(lateness.percentile(50) * 1000, 3),
                    "p99": round(lateness.percentile(99) * 1000, 3),
                    "max": round(max(lateness.values(), default=0.0) * 1000, 3),
                    "samples": min(lateness.count, lateness.size),
                },
                "kinds": {k: v.as_dict() for k, v in sorted(self._kinds.items())},
                "workers": self.pool.stats(),
                "priorities": {c.name.lower(): self._prio[c] for c in TaskClass},
                "paused": sorted(c.name.lower() for c in self._paused),
            }


class Lane:
    """Runs blocking jobs for one I/O resource one at a time, `gap` seconds apart, in order.

    Each Modbus bus or endpoint gets its own lane, so a slow device never holds a lock
    that another bus needs, and a lane never occupies more than one worker.
    """

    def __init__(
        self, engine: Engine, name: str, *, gap: float = 0.0, max_pending: int = 256, cls: TaskClass = TaskClass.HARVEST
    ) -> None:
        self.engine = engine
        self.cls = cls
        self.name = name
        self.gap = gap
        self.max_pending = max_pending
        self._jobs: deque[tuple[Callable[[], Any], Callable[[Outcome[Any]], None]]] = deque()
        self._busy = False
        self._lock = threading.Lock()

    def submit(self, fn: Callable[[], Any], done: Callable[[Outcome[Any]], None]) -> None:
        """Queue a job; `done(outcome)` is called from a worker thread."""
        with self._lock:
            if len(self._jobs) >= self.max_pending:
                full = True
            else:
                full = False
                self._jobs.append((fn, done))
                if self._busy:
                    return
                self._busy = True
        if full:
            done(Outcome(error=PoolFull(f"lane {self.name} full ({self.max_pending} jobs pending)")))
            return
        self._dispatch()

    @property
    def pending(self) -> int:
        """Jobs waiting in this lane (not counting the one running)."""
        return len(self._jobs)

    def _dispatch(self, _now: float | None = None) -> None:
        while True:
            with self._lock:
                if not self._jobs:
                    self._busy = False
                    return
                fn, done = self._jobs.popleft()
            try:
                self.engine.pool.submit(fn, self._finished(done))
                return
            except (PoolFull, PoolClosed) as exc:
                done(Outcome(error=exc))  # then try the next job

    def _finished(self, done: Callable[[Outcome[Any]], None]) -> Callable[[Outcome[Any]], None]:
        def finished(outcome: Outcome[Any]) -> None:
            try:
                done(outcome)
            finally:
                if self.gap > 0 and self._jobs:
                    try:
                        self.engine.call_later(self.gap, self._dispatch, kind=f"lane.{self.name}", cls=self.cls)
                    except EngineStopped:
                        with self._lock:
                            self._busy = False
                else:
                    self._dispatch()

        return finished
