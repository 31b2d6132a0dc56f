"""The engine's ready queues: cancel and move of ready tasks, merged priorities, held order, drain order."""

from __future__ import annotations

import pytest

from server.engine import DEFAULT_POLICY, Duplicate, Engine, FakeClock, Policy, Task, TaskClass


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def engine(clock: FakeClock) -> Engine:
    return Engine(clock)


def recorder(log: list, label: str):
    def run(now: float) -> None:
        log.append(label)

    return run


def test_cancelling_a_ready_task_takes_it_out_at_once(engine: Engine) -> None:
    log: list = []
    tasks = [engine.call_soon(recorder(log, str(i)), kind="r") for i in range(5)]
    assert engine.stats()["ready"] == 5
    assert engine.cancel(tasks[2]) == 1
    assert not tasks[2].queued and tasks[2].cancelled
    assert engine.stats()["ready"] == 4 and engine.stats()["queue_depth"] == 4
    engine.run_pending()
    assert log == ["0", "1", "3", "4"]


def test_a_cancelled_ready_task_submitted_again_runs_once_at_the_back(engine: Engine) -> None:
    log: list = []
    first = engine.call_soon(recorder(log, "first"), kind="r")
    engine.call_soon(recorder(log, "second"), kind="r")
    engine.cancel(first)
    engine.submit(first)
    assert engine.stats()["queue_depth"] == 2
    engine.run_pending()
    assert log == ["second", "first"]


def test_resubmitting_a_ready_task_moves_it_to_the_back_and_runs_it_once(engine: Engine) -> None:
    log: list = []
    first = engine.call_soon(recorder(log, "first"), kind="r")
    engine.call_soon(recorder(log, "second"), kind="r")
    assert engine.submit(first) is first
    assert engine.stats()["queue_depth"] == 2
    engine.run_pending()
    assert log == ["second", "first"]


def test_moving_a_ready_task_into_the_future(engine: Engine, clock: FakeClock) -> None:
    log: list = []
    task = engine.call_soon(recorder(log, "t"), kind="t")
    engine.submit(task, delay=5)
    assert engine.stats()["ready"] == 0 and engine.stats()["queue_depth"] == 1
    engine.run_pending()
    assert log == []
    engine.advance(5)
    assert log == ["t"]


def test_replace_of_a_ready_named_task(engine: Engine) -> None:
    log: list = []
    engine.call_soon(recorder(log, "old"), kind="x", name="job", on_duplicate=Duplicate.REPLACE)
    engine.call_soon(recorder(log, "other"), kind="y")
    engine.call_soon(recorder(log, "new"), kind="x", name="job", on_duplicate=Duplicate.REPLACE)
    assert engine.stats()["queue_depth"] == 2
    engine.run_pending()
    assert log == ["other", "new"]


def test_cancelled_timers_do_not_count_and_are_skipped(engine: Engine) -> None:
    log: list = []
    timers = [engine.call_later(1 + i, recorder(log, str(i)), kind="t") for i in range(4)]
    engine.cancel(timers[0])
    engine.cancel(timers[2])
    stats = engine.stats()
    assert stats["queue_depth"] == 2
    assert stats["next_due_in_s"] == 2.0  # the cancelled head is not the next due time
    engine.advance(10)
    assert log == ["1", "3"]


def test_classes_sharing_a_priority_share_one_fifo(engine: Engine) -> None:
    log: list = []
    flat = Policy({c: 0 for c in TaskClass})
    engine.set_policy(flat)
    engine.call_soon(recorder(log, "housekeeping"), kind="a", cls=TaskClass.HOUSEKEEPING)
    engine.call_soon(recorder(log, "control"), kind="b", cls=TaskClass.CONTROL)
    engine.call_soon(recorder(log, "backlog"), kind="c", cls=TaskClass.BACKLOG)
    engine.run_pending()
    assert log == ["housekeeping", "control", "backlog"]


def test_priority_change_keeps_the_order_tasks_became_ready(engine: Engine) -> None:
    log: list = []
    engine.call_soon(recorder(log, "h1"), kind="h", cls=TaskClass.HOUSEKEEPING)
    engine.call_soon(recorder(log, "b1"), kind="b", cls=TaskClass.BACKLOG)
    engine.call_soon(recorder(log, "h2"), kind="h", cls=TaskClass.HOUSEKEEPING)
    engine.call_soon(recorder(log, "b2"), kind="b", cls=TaskClass.BACKLOG)
    # Backlog and housekeeping now equal: one FIFO in the order they became ready.
    priorities = dict(DEFAULT_POLICY.priorities)
    priorities[TaskClass.BACKLOG] = priorities[TaskClass.HOUSEKEEPING]
    engine.set_policy(Policy(priorities))
    engine.run_pending()
    assert log == ["h1", "b1", "h2", "b2"]


def test_held_tasks_released_in_order_after_tasks_that_stayed_ready(engine: Engine) -> None:
    log: list = []
    engine.set_policy(Policy(DEFAULT_POLICY.priorities, paused=frozenset({TaskClass.BACKLOG})))
    engine.call_soon(recorder(log, "b1"), kind="b", cls=TaskClass.BACKLOG)
    engine.call_soon(recorder(log, "b2"), kind="b", cls=TaskClass.BACKLOG)
    engine.call_soon(recorder(log, "h"), kind="h", cls=TaskClass.HOUSEKEEPING)
    cancelled = engine.call_soon(recorder(log, "b3"), kind="b", cls=TaskClass.BACKLOG)
    assert engine.cancel(cancelled) == 1  # a held task is cancelled like a ready one
    assert engine.stats()["held"] == 2
    engine.set_policy(DEFAULT_POLICY)
    engine.run_pending()
    assert log == ["b1", "b2", "h"]  # backlog outranks housekeeping by default


def test_a_more_urgent_follow_up_runs_before_the_rest_of_the_queue(engine: Engine) -> None:
    log: list = []

    def first(now: float) -> Task:
        log.append("first")
        return Task(recorder(log, "urgent"), kind="u", cls=TaskClass.CONTROL)

    engine.call_soon(first, kind="f", cls=TaskClass.HOUSEKEEPING)
    for i in range(3):
        engine.call_soon(recorder(log, f"queued{i}"), kind="q", cls=TaskClass.HOUSEKEEPING)
    engine.run_pending()
    assert log == ["first", "urgent", "queued0", "queued1", "queued2"]


def test_run_pending_limit_still_guards_a_runaway_task(engine: Engine) -> None:
    def again(now: float) -> Task:
        return Task(again, kind="loop")

    engine.call_soon(again, kind="loop")
    with pytest.raises(RuntimeError, match="more than 50 tasks due at once"):
        engine.run_pending(limit=50)


def test_stats_count_every_run_and_lateness_sample(engine: Engine, clock: FakeClock) -> None:
    for _ in range(3):
        engine.call_soon(lambda now: None, kind="a")
    engine.call_soon(lambda now: None, kind="b")
    engine.call_soon(lambda now: None, kind="a")  # a kind seen again after another one
    engine.run_pending()
    stats = engine.stats()
    assert stats["kinds"]["a"]["runs"] == 4 and stats["kinds"]["b"]["runs"] == 1
    assert stats["tasks_run"] == 5 and stats["lateness_ms"]["samples"] == 5
