"""Deterministic fake-clock tests of the engine: ordering, ties, priorities, cancellation, duplicates."""

from __future__ import annotations

import pytest

from server.engine import DEFAULT_POLICY, Duplicate, Engine, EngineStopped, FakeClock, Policy, Task, TaskClass


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def engine(clock: FakeClock) -> Engine:
    return Engine(clock)


def recorder(log: list, label: str):
    def run(now: float) -> None:
        log.append((label, now))

    return run


def test_tasks_run_in_due_order_at_their_time(engine: Engine, clock: FakeClock) -> None:
    log: list = []
    start = clock.monotonic()
    for label, delay in [("c", 3.0), ("a", 1.0), ("b", 2.0)]:
        engine.call_later(delay, recorder(log, label), kind=label)
    assert engine.run_pending() == 0
    engine.advance(5)
    assert log == [("a", start + 1), ("b", start + 2), ("c", start + 3)]


def test_ties_run_fifo(engine: Engine) -> None:
    log: list = []
    for i in range(50):
        engine.call_soon(recorder(log, str(i)), kind="t", cls=TaskClass.HARVEST)
    engine.run_pending()
    assert [label for label, _ in log] == [str(i) for i in range(50)]


def test_priority_breaks_ties_at_the_same_due_time(engine: Engine) -> None:
    log: list = []
    order = [TaskClass.HOUSEKEEPING, TaskClass.BACKLOG, TaskClass.UPLINK_LIVE, TaskClass.HARVEST, TaskClass.CONTROL]
    for cls in order:
        engine.call_later(1.0, recorder(log, cls.name), kind=cls.name, cls=cls)
    engine.advance(1.0)
    assert [label for label, _ in log] == ["CONTROL", "HARVEST", "UPLINK_LIVE", "BACKLOG", "HOUSEKEEPING"]


def test_overdue_tasks_run_by_priority_before_due_order(engine: Engine, clock: FakeClock) -> None:
    log: list = []
    engine.call_later(1.0, recorder(log, "housekeeping"), kind="h", cls=TaskClass.HOUSEKEEPING)
    engine.call_later(2.0, recorder(log, "control"), kind="c", cls=TaskClass.CONTROL)
    clock.advance(5)  # the loop fell behind: both are due now
    engine.run_pending()
    assert [label for label, _ in log] == ["control", "housekeeping"]


def test_earlier_due_wins_over_priority_when_not_yet_due(engine: Engine) -> None:
    log: list = []
    engine.call_later(1.0, recorder(log, "housekeeping"), kind="h", cls=TaskClass.HOUSEKEEPING)
    engine.call_later(2.0, recorder(log, "control"), kind="c", cls=TaskClass.CONTROL)
    engine.advance(3)
    assert [label for label, _ in log] == ["housekeeping", "control"]


def test_task_returning_itself_is_rescheduled(engine: Engine, clock: FakeClock) -> None:
    times: list[float] = []

    class Ticker(Task):
        def run(self, now: float) -> Task | None:
            times.append(now)
            self.due = now + 2
            return self if len(times) < 3 else None

    engine.submit(Ticker(kind="ticker"))
    start = clock.monotonic()
    engine.advance(10)
    assert times == [start, start + 2, start + 4]
    assert engine.stats()["queue_depth"] == 0


def test_follow_ups_are_queued(engine: Engine) -> None:
    log: list = []

    def first(now: float) -> list[Task]:
        log.append("first")
        return [Task(recorder(log, "second"), kind="second"), Task(recorder(log, "third"), kind="third", due=now + 1)]

    engine.call_soon(first, kind="first")
    engine.advance(2)
    assert [x if isinstance(x, str) else x[0] for x in log] == ["first", "second", "third"]


def test_periodic_keeps_phase_and_skips_missed_slots(engine: Engine, clock: FakeClock) -> None:
    times: list[float] = []
    start = clock.monotonic()
    task = engine.every(1.0, times.append, kind="tick")
    engine.advance(3)
    assert times == [start, start + 1, start + 2, start + 3]
    clock.advance(2.5)  # stalled: the +4 slot runs late at +5.5, the +5 slot is skipped
    engine.run_pending()
    assert times[-1] == start + 5.5
    assert task.due == start + 6
    assert task.skipped == 1


def test_cancel_by_task_and_by_name(engine: Engine) -> None:
    log: list = []
    a = engine.call_later(1, recorder(log, "a"), kind="a")
    engine.call_later(1, recorder(log, "b"), kind="b", name="job", on_duplicate=Duplicate.ALLOW)
    engine.call_later(1, recorder(log, "b2"), kind="b", name="job", on_duplicate=Duplicate.ALLOW)
    engine.call_later(1, recorder(log, "c"), kind="c")
    assert engine.cancel(a) == 1
    assert engine.cancel(a) == 0
    assert engine.cancel("job") == 2
    assert engine.cancel("nothing") == 0
    assert engine.stats()["queue_depth"] == 1
    engine.advance(2)
    assert [label for label, _ in log] == ["c"]


def test_cancelled_periodic_running_task_is_not_rescheduled(engine: Engine) -> None:
    runs: list[float] = []

    def tick(now: float) -> None:
        runs.append(now)
        engine.cancel("tick")  # cancelled while it runs

    engine.every(1.0, tick, kind="tick", name="tick")
    engine.advance(5)
    assert len(runs) == 1
    assert engine.stats()["queue_depth"] == 0


def test_duplicate_replace_keeps_the_newest(engine: Engine) -> None:
    log: list = []
    engine.call_later(1, recorder(log, "old"), kind="x", name="scan", on_duplicate=Duplicate.REPLACE)
    engine.call_later(2, recorder(log, "new"), kind="x", name="scan", on_duplicate=Duplicate.REPLACE)
    engine.advance(3)
    assert [label for label, _ in log] == ["new"]


def test_duplicate_drop_keeps_the_oldest(engine: Engine) -> None:
    log: list = []
    first = engine.call_later(1, recorder(log, "old"), kind="x", name="scan", on_duplicate=Duplicate.DROP)
    kept = engine.call_later(0, recorder(log, "new"), kind="x", name="scan", on_duplicate=Duplicate.DROP)
    assert kept is first
    engine.advance(3)
    assert [label for label, _ in log] == ["old"]
    # Once the first has run, the name is free again.
    engine.call_soon(recorder(log, "later"), kind="x", name="scan", on_duplicate=Duplicate.DROP)
    engine.run_pending()
    assert [label for label, _ in log] == ["old", "later"]


def test_duplicate_drop_while_running(engine: Engine) -> None:
    log: list = []

    def scan(now: float) -> None:
        log.append("scan")
        engine.call_soon(recorder(log, "again"), kind="x", name="scan", on_duplicate=Duplicate.DROP)

    engine.call_soon(scan, kind="x", name="scan", on_duplicate=Duplicate.DROP)
    engine.run_pending()
    assert log == ["scan"]


def test_duplicate_allow_runs_both(engine: Engine) -> None:
    log: list = []
    engine.call_soon(recorder(log, "1"), kind="x", name="n", on_duplicate=Duplicate.ALLOW)
    engine.call_soon(recorder(log, "2"), kind="x", name="n", on_duplicate=Duplicate.ALLOW)
    engine.run_pending()
    assert [label for label, _ in log] == ["1", "2"]


def test_resubmitting_a_queued_task_moves_it(engine: Engine, clock: FakeClock) -> None:
    log: list = []
    task = engine.call_later(5, recorder(log, "t"), kind="t")
    engine.submit(task, delay=1)
    assert engine.stats()["queue_depth"] == 1
    engine.advance(2)
    assert len(log) == 1


def test_policy_change_reorders_and_pauses(engine: Engine) -> None:
    log: list = []
    offline = Policy(DEFAULT_POLICY.priorities, paused=frozenset({TaskClass.BACKLOG}))
    engine.set_policy(offline)
    engine.call_soon(recorder(log, "backlog"), kind="b", cls=TaskClass.BACKLOG)
    engine.call_soon(recorder(log, "harvest"), kind="h", cls=TaskClass.HARVEST)
    engine.run_pending()
    assert [label for label, _ in log] == ["harvest"]
    assert engine.stats()["held"] == 1
    engine.set_policy(DEFAULT_POLICY)
    engine.run_pending()
    assert [label for label, _ in log] == ["harvest", "backlog"]


def test_policy_must_cover_every_class() -> None:
    with pytest.raises(ValueError, match="no priority to"):
        Policy({TaskClass.CONTROL: 0})


def test_bad_return_value_is_a_counted_failure_not_a_crash(engine: Engine) -> None:
    engine.call_soon(lambda now: 42, kind="bad")
    engine.call_soon(lambda now: None, kind="good")
    assert engine.run_pending() == 2
    stats = engine.stats()
    assert stats["failures"] == 1
    assert stats["kinds"]["bad"]["failures"] == 1


def test_stopped_engine_refuses_tasks(engine: Engine) -> None:
    engine.stop()
    with pytest.raises(EngineStopped):
        engine.call_soon(lambda now: None, kind="late")


def test_invalid_task_arguments() -> None:
    with pytest.raises(ValueError):
        Task(lambda now: None, interval=0)
    with pytest.raises(ValueError):
        Task(lambda now: None, budget=0)
