"""Engine benchmark: throughput, lateness under worker load and idle cost, beside bare baselines in one run.

Run: `make bench` or `.venv/bin/python bench/engine.py [--tasks N] [--seconds S] [--json PATH]`.
Baselines, driving the same tasks in the same process: a bare `heapq` loop and the stdlib `sched` module.
"""

from __future__ import annotations

import argparse
import gc
import heapq
import json
import sched
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from server.engine import Engine, Task, TaskClass


def noop(now: float) -> None:
    return None


def bare_heapq(n: int) -> float:
    """Tasks/s of a bare heap loop: push n (due, prio, seq, fn), pop and call each with the time."""
    t0 = time.perf_counter()
    mono = time.monotonic
    heap: list = []
    now = mono()
    for i in range(n):
        heapq.heappush(heap, (now, 0, i, noop))
    while heap:
        _due, _, _, fn = heapq.heappop(heap)
        fn(mono())
    return n / (time.perf_counter() - t0)


def stdlib_sched(n: int) -> float:
    """Tasks/s of sched.scheduler driving the same tasks."""
    t0 = time.perf_counter()
    s = sched.scheduler(time.monotonic, time.sleep)
    for _ in range(n):
        s.enter(0, 1, noop, (0.0,))
    s.run()
    return n / (time.perf_counter() - t0)


def engine_throughput(n: int) -> float:
    """Tasks/s of the engine: submit n trivial tasks, then the real loop thread runs them all."""
    engine = Engine()
    done = threading.Event()
    t0 = time.perf_counter()
    for _ in range(n - 1):
        engine.call_soon(noop, kind="noop", cls=TaskClass.HARVEST)
    engine.call_soon(lambda now: done.set(), kind="end", cls=TaskClass.HOUSEKEEPING)
    return run_until(engine, done, n, t0)


def run_until(engine: Engine, done: threading.Event, n: int, t0: float) -> float:
    """Run the engine on its thread until `done`; n tasks per second since t0."""
    engine.start_thread()
    done.wait()
    rate = n / (time.perf_counter() - t0)
    engine.stop()
    engine.wait_stopped(5)
    return rate


def measure(fn, n: int) -> float:  # type: ignore[no-untyped-def]
    """Run one throughput measurement from a clean heap, so garbage of the previous one is not billed to it."""
    gc.collect()
    return fn(n)


CHAINS = 100  # tasks in flight in the steady-state run: a busy gateway, not a 200k-deep backlog


def bare_heapq_steady(n: int) -> float:
    """Tasks/s of a bare heap loop where each task returns its successor (queue depth CHAINS)."""
    mono = time.monotonic
    heap: list = []
    left = [n]

    def step(now: float) -> tuple | None:
        left[0] -= 1
        return (now, 0, left[0], step) if left[0] > 0 else None

    t0 = time.perf_counter()
    now = mono()
    for i in range(CHAINS):
        heapq.heappush(heap, (now, 0, n + i, step))
    while heap:
        _, _, _, fn = heapq.heappop(heap)
        nxt = fn(mono())
        if nxt is not None:
            heapq.heappush(heap, nxt)
    return n / (time.perf_counter() - t0)


def engine_steady(n: int) -> float:
    """Tasks/s of the engine where each task returns a new follow-up task (queue depth CHAINS)."""
    engine = Engine()
    left = [n]
    done = threading.Event()

    def step(now: float) -> Task | None:
        left[0] -= 1
        if left[0] > 0:
            return Task(step, kind="chain", cls=TaskClass.HARVEST)
        done.set()
        return None

    for _ in range(CHAINS):
        engine.call_soon(step, kind="chain", cls=TaskClass.HARVEST)
    return run_until(engine, done, n, time.perf_counter())


def worker_job() -> None:
    """What a Modbus read looks like to the process: mostly waiting, a little parsing."""
    time.sleep(0.005)
    sum(range(2000))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def engine_lateness(tasks: int, seconds: float, workers: int) -> dict[str, float]:
    """Lateness of `tasks` periodic 1 s tasks (phases spread) while `workers` workers stay busy."""
    engine = Engine(workers=workers, max_pending=workers * 4)
    lateness: list[float] = []
    stop = threading.Event()

    def keep_busy(outcome: object = None) -> None:
        if not stop.is_set():
            engine.offload(worker_job, keep_busy, kind="io", cls=TaskClass.HARVEST)

    def make(i: int):
        def tick(now: float) -> None:
            lateness.append(now - task_due[i])
            task_due[i] += 1.0

        return tick

    start = time.monotonic() + 0.2
    task_due = [start + i / tasks for i in range(tasks)]
    for i in range(tasks):
        engine.every(1.0, make(i), first=task_due[i] - time.monotonic(), kind="tick", cls=TaskClass.HARVEST)
    engine.start_thread()
    for _ in range(workers):
        keep_busy()
    time.sleep(seconds + 0.2)
    stop.set()
    engine.stop()
    engine.wait_stopped(5)
    return {"p50_ms": percentile(lateness, 50) * 1000, "p99_ms": percentile(lateness, 99) * 1000, "n": len(lateness)}


def sched_lateness(tasks: int, seconds: float, workers: int) -> dict[str, float]:
    """The same periodic tasks driven by sched, with the same background worker load in plain threads."""
    s = sched.scheduler(time.monotonic, time.sleep)
    lateness: list[float] = []
    stop = threading.Event()
    end = time.monotonic() + 0.2 + seconds

    def busy() -> None:
        while not stop.is_set():
            worker_job()

    def tick(due: float) -> None:
        lateness.append(time.monotonic() - due)
        if due + 1.0 < end:
            s.enterabs(due + 1.0, 1, tick, (due + 1.0,))

    start = time.monotonic() + 0.2
    for i in range(tasks):
        s.enterabs(start + i / tasks, 1, tick, (start + i / tasks,))
    threads = [threading.Thread(target=busy, daemon=True) for _ in range(workers)]
    for t in threads:
        t.start()
    s.run()
    stop.set()
    for t in threads:
        t.join()
    return {"p50_ms": percentile(lateness, 50) * 1000, "p99_ms": percentile(lateness, 99) * 1000, "n": len(lateness)}


def idle_cost(seconds: float) -> dict[str, float]:
    """CPU seconds the engine thread uses while nothing is due (one hourly task queued)."""
    engine = Engine()
    engine.every(3600.0, noop, first=3600.0, kind="hourly")
    thread = engine.start_thread()
    time.sleep(0.1)
    before_runs = engine.stats()["tasks_run"]
    cpu0 = time.process_time()
    time.sleep(seconds)
    cpu = time.process_time() - cpu0
    runs = engine.stats()["tasks_run"] - before_runs
    engine.stop()
    engine.wait_stopped(5)
    thread.join(5)
    return {"cpu_s": cpu, "cpu_pct": cpu / seconds * 100, "tasks_run": runs}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=200_000, help="trivial tasks per throughput run")
    parser.add_argument("--periodic", type=int, default=1000, help="periodic tasks for lateness")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds of the lateness run")
    parser.add_argument("--workers", type=int, default=4, help="busy workers during the lateness run")
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "engine.json")
    args = parser.parse_args()

    # Interleaved rounds, so a noisy neighbour slows baseline and engine alike; ratios are per round.
    rounds = [
        (measure(bare_heapq, args.tasks), measure(stdlib_sched, args.tasks), measure(engine_throughput, args.tasks))
        for _ in range(5)
    ]
    bare, sch, eng = (statistics.median(r[i] for r in rounds) for i in range(3))
    ratio = statistics.median(b / e for b, _, e in rounds)
    print(f"throughput ({args.tasks:,} trivial tasks, median of 5 interleaved rounds)")
    print(f"  bare heapq loop   {bare:>12,.0f} tasks/s   1.00x")
    print(f"  stdlib sched      {sch:>12,.0f} tasks/s   {bare / sch:.2f}x slower than heapq")
    print(f"  ohm engine        {eng:>12,.0f} tasks/s   {ratio:.2f}x slower than heapq, {eng / sch:.2f}x sched")
    print(f"  per-round ratios engine/heapq: {', '.join(f'{b / e:.2f}' for b, _, e in rounds)}")

    steady = [(measure(bare_heapq_steady, args.tasks), measure(engine_steady, args.tasks)) for _ in range(5)]
    s_bare, s_eng = (statistics.median(r[i] for r in steady) for i in range(2))
    s_ratio = statistics.median(b / e for b, e in steady)
    print(f"steady state ({args.tasks:,} tasks, each returning its successor, {CHAINS} in flight; median of 5)")
    print(f"  bare heapq loop   {s_bare:>12,.0f} tasks/s   1.00x")
    print(f"  ohm engine        {s_eng:>12,.0f} tasks/s   {s_ratio:.2f}x slower than heapq")
    print(f"  per-round ratios engine/heapq: {', '.join(f'{b / e:.2f}' for b, e in steady)}")

    late_e = engine_lateness(args.periodic, args.seconds, args.workers)
    late_s = sched_lateness(args.periodic, args.seconds, args.workers)
    print(f"lateness ({args.periodic} periodic 1 s tasks, {args.seconds:g} s, {args.workers} busy workers)")
    print(f"  stdlib sched      p50 {late_s['p50_ms']:7.3f} ms  p99 {late_s['p99_ms']:7.3f} ms  ({late_s['n']} runs)")
    print(f"  ohm engine        p50 {late_e['p50_ms']:7.3f} ms  p99 {late_e['p99_ms']:7.3f} ms  ({late_e['n']} runs)")
    late_ratio = late_e["p99_ms"] / late_s["p99_ms"] if late_s["p99_ms"] else float("inf")
    print(f"  p99 ratio engine/sched {late_ratio:.2f}")

    idle = idle_cost(2.0)
    print(
        f"idle (nothing due for 2 s): {idle['cpu_s'] * 1000:.2f} ms CPU ({idle['cpu_pct']:.3f}%), "
        f"{idle['tasks_run']} tasks run"
    )

    targets = {
        "throughput >= 100k tasks/s": eng >= 100_000,
        "within 3x of bare heapq (steady state)": s_ratio <= 3.0,
        "within 3x of bare heapq (200k-deep queue)": ratio <= 3.0,
        "p99 lateness < 2 ms": late_e["p99_ms"] < 2.0,
        "idle CPU ~0 (< 0.5%)": idle["cpu_pct"] < 0.5,
    }
    for name, ok in targets.items():
        print(f"  target {name}: {'met' if ok else 'NOT met'}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "throughput": {"bare_heapq": bare, "sched": sch, "engine": eng, "ratio_vs_heapq": ratio},
                "steady": {"bare_heapq": s_bare, "engine": s_eng, "ratio_vs_heapq": s_ratio, "in_flight": CHAINS},
                "lateness": {"engine": late_e, "sched": late_s},
                "idle": idle,
                "targets": targets,
            },
            indent=2,
        )
    )
    print(f"results: {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
