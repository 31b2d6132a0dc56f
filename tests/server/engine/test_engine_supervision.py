"""Supervision (logged once, counted, backoff), overrun reporting and stats, on a fake clock."""

from __future__ import annotations

import itertools
import logging
import random

import pytest

from server.engine import Engine, FakeClock, Task, TaskClass


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def engine(clock: FakeClock) -> Engine:
    return Engine(clock, rng=random.Random(7))


def test_failing_periodic_task_backs_off_exponentially_with_jitter(engine: Engine, clock: FakeClock) -> None:
    attempts: list[float] = []

    def flaky(now: float) -> None:
        attempts.append(now)
        raise OSError("device unreachable")

    engine.every(10.0, flaky, kind="poll", retry_base=1.0, retry_cap=8.0)
    engine.advance(60)
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    # Equal jitter: each gap lies in the upper half of min(cap, base * 2^(n-1)).
    ceilings = [min(8.0, 2.0**i) for i in range(len(gaps))]
    for gap, ceiling in zip(gaps, ceilings, strict=True):
        assert ceiling / 2 <= gap <= ceiling
    assert len(attempts) >= 8  # kept retrying: never dropped
    assert engine.stats()["kinds"]["poll"]["failures"] == len(attempts)
    assert engine.stats()["failing"] == {"poll": len(attempts)}


def test_backoff_resets_after_recovery(engine: Engine, clock: FakeClock) -> None:
    state = {"fail": 3, "runs": []}

    def sometimes(now: float) -> None:
        state["runs"].append(now)
        if state["fail"] > 0:
            state["fail"] -= 1
            raise OSError("down")

    task = engine.every(5.0, sometimes, kind="poll", retry_base=1.0, retry_cap=4.0)
    engine.advance(30)
    assert task.failures == 0
    assert engine.stats()["failing"] == {}
    runs = state["runs"]
    # After recovery the normal 5 s cadence resumes.
    assert runs[-1] - runs[-2] == pytest.approx(5.0)


def test_failure_logged_once_then_debug_and_recovery_logged(engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    state = {"fail": 4}

    def sometimes(now: float) -> None:
        if state["fail"] > 0:
            state["fail"] -= 1
            raise OSError("down")

    engine.every(1.0, sometimes, kind="poll", retry_base=0.5, retry_cap=1.0)
    with caplog.at_level(logging.DEBUG, logger="ohm.engine"):
        engine.advance(20)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    debugs = [r for r in caplog.records if r.levelno == logging.DEBUG and "failed again" in r.getMessage()]
    recovered = [r for r in caplog.records if "recovered after 4 failures" in r.getMessage()]
    assert len(errors) == 1
    assert len(debugs) == 3
    assert len(recovered) == 1


def test_one_shot_failure_is_counted_and_dropped(engine: Engine) -> None:
    def boom(now: float) -> None:
        raise RuntimeError("bad")

    engine.call_soon(boom, kind="once")
    engine.advance(100)
    stats = engine.stats()
    assert stats["failures"] == 1
    assert stats["kinds"]["once"]["runs"] == 1
    assert stats["queue_depth"] == 0


def test_overrun_is_reported_once_and_counted(
    engine: Engine, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    def slow(now: float) -> None:
        clock.advance(0.2)  # the task "takes" 200 ms of fake time

    with caplog.at_level(logging.WARNING, logger="ohm.engine"):
        for _ in range(3):
            engine.submit(Task(slow, kind="slow", budget=0.05))
        engine.submit(Task(lambda now: None, kind="quick", budget=0.05))
        engine.run_pending()
    stats = engine.stats()
    assert stats["kinds"]["slow"]["overruns"] == 3
    assert stats["kinds"]["quick"]["overruns"] == 0
    assert stats["overruns"] == 3
    warnings = [r for r in caplog.records if "over its 50.0 ms budget" in r.getMessage()]
    assert len(warnings) == 1


def test_stats_report_lateness_and_run_time(engine: Engine, clock: FakeClock) -> None:
    engine.call_later(1.0, lambda now: None, kind="late", cls=TaskClass.HARVEST)
    clock.advance(1.5)  # starts 0.5 s after it was due
    engine.run_pending()
    stats = engine.stats()
    assert stats["lateness_ms"]["p99"] == pytest.approx(500.0)
    assert stats["kinds"]["late"]["runs"] == 1
    assert stats["tasks_run"] == 1
    assert set(stats) >= {"queue_depth", "lateness_ms", "kinds", "failures", "workers", "priorities"}


def test_advance_needs_a_fake_clock() -> None:
    with pytest.raises(TypeError):
        Engine().advance(1)
