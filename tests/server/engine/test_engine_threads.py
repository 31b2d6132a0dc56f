"""The engine with real threads: cross-thread submit, workers, lanes, shutdown, and a stress test."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path

import pytest

from server.engine import Engine, EngineStopped, Outcome, PoolFull, TaskClass
from tests.support import wait_for

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def engine():
    engine = Engine(workers=4, max_pending=64)
    engine.start_thread()
    try:
        yield engine
    finally:
        engine.stop()
        assert engine.wait_stopped(5)


def test_task_from_another_thread_runs_within_a_few_ms(engine: Engine) -> None:
    delays = []
    for _ in range(50):
        ran = threading.Event()
        t0 = time.perf_counter()
        engine.call_soon(lambda now, ran=ran: ran.set(), kind="ping")
        assert ran.wait(1)
        delays.append(time.perf_counter() - t0)
    delays.sort()
    assert delays[len(delays) // 2] < 0.02  # generous: measured precisely in bench/engine.py


def test_idle_loop_does_not_wake_up(engine: Engine) -> None:
    engine.call_soon(lambda now: None, kind="one")
    time.sleep(0.05)
    before = engine.stats()["tasks_run"]
    cpu0 = time.thread_time()
    time.sleep(0.3)
    assert engine.stats()["tasks_run"] == before
    assert engine.stats()["next_due_in_s"] is None
    assert time.thread_time() - cpu0 < 0.1  # this thread only; nothing else is running


def test_many_threads_submitting_concurrently_nothing_lost_order_kept(engine: Engine) -> None:
    threads, per_thread = 8, 2000
    seen: dict[int, list[int]] = {t: [] for t in range(threads)}
    done = threading.Event()
    remaining = [threads * per_thread]

    def producer(t: int) -> None:
        for i in range(per_thread):

            def run(now: float, t: int = t, i: int = i) -> None:
                seen[t].append(i)
                remaining[0] -= 1
                if remaining[0] == 0:
                    done.set()

            engine.call_soon(run, kind="stress", cls=TaskClass.HARVEST)

    workers = [threading.Thread(target=producer, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert done.wait(20)
    for t in range(threads):
        assert seen[t] == list(range(per_thread))  # nothing lost, each submitter's order kept
    assert engine.stats()["kinds"]["stress"]["runs"] == threads * per_thread


def test_offload_posts_result_back_on_the_engine_thread(engine: Engine) -> None:
    got: list[tuple[Outcome, str]] = []
    done = threading.Event()

    def then(outcome: Outcome) -> None:
        got.append((outcome, threading.current_thread().name))
        done.set()

    engine.offload(lambda: time.sleep(0.02) or 42, then, kind="io")
    assert done.wait(2)
    outcome, thread = got[0]
    assert outcome.ok and outcome.value == 42 and outcome.elapsed >= 0.02
    assert thread == "ohm-engine"
    assert engine.stats()["kinds"]["io[io]"]["runs"] == 1


def test_offload_error_reaches_then_or_is_counted(engine: Engine) -> None:
    got: list[Outcome] = []
    done = threading.Event()

    def fail() -> None:
        raise OSError("bus error")

    engine.offload(fail, lambda o: (got.append(o), done.set()) and None, kind="io")
    assert done.wait(2)
    assert isinstance(got[0].error, OSError)
    with pytest.raises(OSError):
        got[0].unwrap()
    engine.offload(fail, None, kind="quiet")
    deadline = time.monotonic() + 2
    while engine.stats()["kinds"].get("quiet", {}).get("failures") != 1:
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_full_pool_is_reported_not_lost() -> None:
    engine = Engine(workers=1, max_pending=2)
    engine.start_thread()
    try:
        gate = threading.Event()
        outcomes: list[Outcome] = []
        lock = threading.Lock()

        def record(o: Outcome) -> None:
            with lock:
                outcomes.append(o)

        for _ in range(5):
            engine.offload(gate.wait, record, kind="io")
        gate.set()
        deadline = time.monotonic() + 3
        while len(outcomes) < 5:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert sum(isinstance(o.error, PoolFull) for o in outcomes) == 3
        assert engine.stats()["workers"]["rejected"] == 3
    finally:
        engine.stop()
        engine.wait_stopped(5)


def test_lane_serialises_jobs_with_a_gap(engine: Engine) -> None:
    lane = engine.lane("bus0", gap=0.02)
    active = [0]
    overlap = []
    starts: list[float] = []
    ends: list[float] = []
    done = threading.Event()

    def job() -> None:
        active[0] += 1
        overlap.append(active[0])
        starts.append(time.monotonic())
        time.sleep(0.01)
        ends.append(time.monotonic())
        active[0] -= 1

    for i in range(5):
        engine.offload(job, (lambda o: done.set()) if i == 4 else None, kind="modbus", lane=lane)
    assert done.wait(3)
    assert max(overlap) == 1  # never two at once on one bus
    assert all(s - e >= 0.019 for e, s in zip(ends, starts[1:], strict=False))  # paced


def test_two_lanes_do_not_block_each_other(engine: Engine) -> None:
    slow, fast = engine.lane("slow"), engine.lane("fast")
    fast_done = threading.Event()
    release = threading.Event()
    engine.offload(lambda: release.wait(2), None, kind="slow", lane=slow)
    engine.offload(lambda: None, lambda o: fast_done.set(), kind="fast", lane=fast)
    assert fast_done.wait(1)
    release.set()


def test_stop_runs_hooks_and_finishes_in_time() -> None:
    engine = Engine()
    hooks: list[str] = []
    engine.on_shutdown("first", lambda: hooks.append("first"))
    engine.on_shutdown("broken", lambda: 1 / 0)
    engine.on_shutdown("last", lambda: hooks.append("last"))
    engine.start_thread()
    engine.offload(lambda: time.sleep(10), None, kind="stuck")  # a job stuck in I/O
    time.sleep(0.05)
    t0 = time.monotonic()
    engine.stop(timeout=0.5)
    assert engine.wait_stopped(3)
    assert time.monotonic() - t0 < 1.5
    assert hooks == ["first", "last"]
    with pytest.raises(EngineStopped):
        engine.call_soon(lambda now: None, kind="late")


def test_stop_before_run_still_runs_the_shutdown_hooks() -> None:
    # A signal while the services start: the engine never looped, yet what they opened must be closed.
    engine = Engine()
    hooks: list[str] = []
    engine.on_shutdown("api", lambda: hooks.append("api"))
    engine.stop()
    assert engine.state == "stopped"
    engine.run()  # returns at once after the hooks
    assert hooks == ["api"]
    with pytest.raises(RuntimeError, match="already stopped"):
        engine.run()
    assert hooks == ["api"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_process_stops_cleanly_on_signal_within_5_s(tmp_path: Path, sig: signal.Signals) -> None:
    env = {**os.environ, "OHM_DATA_DIR": str(tmp_path), "OHM_STATS_INTERVAL": "0", "PYTHONPATH": str(ROOT)}
    env.update({"OHM_API_HOST": "127.0.0.1", "OHM_API_PORT": "0"})  # loopback only; no API needed here
    proc = subprocess.Popen([sys.executable, "-m", "server"], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 15
        lines = []
        for line in proc.stderr:  # type: ignore[union-attr]
            lines.append(line)
            if "state booting ->" in line:
                break
            assert time.monotonic() < deadline, "".join(lines)
        t0 = time.monotonic()
        proc.send_signal(sig)
        rc = proc.wait(timeout=8)
        elapsed = time.monotonic() - t0
        rest = proc.stderr.read()  # type: ignore[union-attr]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert rc == 0, rest
    assert elapsed < 5.0
    assert "stopped cleanly" in rest


def test_loop_survives_when_the_only_timer_left_is_cancelled(engine: Engine) -> None:
    # Regression: with nothing due the loop once waited on an infinite timeout and died of OverflowError.
    far = engine.call_later(3600, lambda now: None, kind="far", name="far")
    time.sleep(0.05)
    engine.cancel(far)
    time.sleep(0.05)
    ran = threading.Event()
    engine.call_soon(lambda now: ran.set(), kind="after")
    assert ran.wait(2) and engine.state == "running"


def test_an_idle_worker_keeps_nothing_of_its_last_job_alive(engine: Engine) -> None:
    # Regression: the worker's locals held the last job's closure, so an old MQTT client it closed lived on
    # with its sockets until that worker ran something else.

    class Resource:
        pass

    res = Resource()
    gone = weakref.ref(res)
    done = threading.Event()
    engine.offload(lambda res=res: res, lambda outcome: done.set(), kind="hold")
    assert done.wait(2)
    del res
    wait_for(lambda: gone() is None, 2)  # no gc.collect(): reference counting alone must free it
