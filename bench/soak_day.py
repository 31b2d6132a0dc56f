"""A simulated 24 h day at accelerated time: memory and queue depths must not grow.

    .venv/bin/python bench/soak_day.py [--hours 24] [--devices 10] [--interval 10] [--batch 10]

One process, a fake clock, the real parts in between: a Gateway with the real identity (software key),
outbox (SQLite in WAL mode on disk) and telemetry (journal, signed chained batches) services; one real
Poller per device on its own lane with a real Endpoint, reading registers (sunspec walk, planned reads,
decoding) from the simulator's register image computed at the fake wall time - the daylight curve of
modbus_slave (night, sunrise, noon peak, sunset) - instead of over a socket, so a day takes minutes,
not a day. Blocking jobs still run on the engine's real worker threads; after each simulated second
the harness waits for them and runs what they posted (the fake clock stands still meanwhile).
The uplink is a stand-in: every `--ack` seconds it takes up to 500 waiting rows and deletes them, as
PUBACKs would (the real MQTT uplink runs on real time; bench/uplink.py measures it against mosquitto).

Every simulated hour: traced Python memory (tracemalloc), RSS, engine queue depth, worker queue,
outbox rows, journal rows, telemetry pending, polls and records. Baseline: hour 2 (after start-up
and the first caches); figures: the last hour; ratio: last / hour 2. No growth = ratio about 1.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from modbus_slave.server import Simulator  # noqa: E402
from server.config import load  # noqa: E402
from server.crypto.service import attach as identity  # noqa: E402
from server.devices.poller import Poller  # noqa: E402
from server.devices.profile import load_profile  # noqa: E402
from server.devices.transport import Endpoint, Link  # noqa: E402
from server.engine import FakeClock, TaskClass  # noqa: E402
from server.gateway import Gateway  # noqa: E402
from server.outbox.service import attach as outbox  # noqa: E402
from server.outbox.store import OutboxStore  # noqa: E402
from server.telemetry.service import attach as telemetry  # noqa: E402

PROFILE = "sma"
MIDNIGHT = 1_767_225_600.0  # 2026-01-01T00:00:00Z: the day starts in the dark, like the simulator's curve


class ImageClient:
    """A Modbus client answering from a simulator's register image (what its TCP server would send)."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    def read(self, fc: int, address: int, count: int, unit: int) -> list[int]:
        """Registers address..address+count-1 of function `fc` (0 where the device has none)."""
        img = self.sim.image()
        return [img.get((fc, a), 0) for a in range(address, address + count)]

    def write(self, address: int, values: list[int], unit: int, fc: int = 16) -> None:
        """Writes go to the simulator like a real write."""
        self.sim._write(address, values)

    def close(self) -> None:
        """Nothing to close."""


@dataclass
class Sample:
    """What one simulated hour ended with."""

    hour: int
    traced_kb: float
    rss_mb: float
    queue_depth: int
    workers_queued: int
    outbox_rows: int
    journal_rows: int
    pending: int
    polls: int
    records: int
    pv_w: float

    def as_dict(self) -> dict[str, Any]:
        """Plain data."""
        return dict(self.__dict__)


def rss_mb() -> float:
    """This process's resident set size in MB."""
    return int(Path("/proc/self/status").read_text().split("VmRSS:")[1].split()[0]) / 1024


def settle(gw: Gateway, limit: int = 1000) -> None:
    """Run what is due, wait for the workers, run what they posted; until nothing is left at this time."""
    engine = gw.engine
    for _ in range(limit):
        ran = engine.run_pending()
        if not engine.pool.join_idle(10):
            raise RuntimeError("worker jobs did not finish within 10 s")
        if not ran and not engine.pool.stats()["queued"] and not engine.run_pending():
            return
    raise RuntimeError("the engine did not settle (a task keeps rescheduling itself at the same instant?)")


def soak(
    data: Path,
    hours: float = 24.0,
    devices: int = 10,
    interval: float = 10.0,
    batch: float = 10.0,
    ack: float = 10.0,
    step: float = 1.0,
    on_hour: Callable[[Sample], None] | None = None,
    setup: Callable[[Gateway], None] | None = None,
) -> list[Sample]:
    """Run the simulated day; one Sample per hour. tracemalloc must already be tracing.

    `setup(gateway)` runs after the services are attached (tests plant a leak there to see it caught).
    """
    clock = FakeClock(start=1000.0, wall=MIDNIGHT)
    overrides = {
        "data_dir": data,
        "stats_interval": 0,
        "identity.backend": "software",
        "log_level": "warning",
        "telemetry.batch_interval": batch,
    }
    gw = Gateway(load(None, env={}, overrides=overrides), clock, services=[identity, outbox, telemetry])
    gw.start()
    engine, ob, tele = gw.engine, gw.services["outbox"], gw.services["telemetry"]
    if setup is not None:
        setup(gw)
    profile = load_profile(PROFILE)
    sims = [Simulator(PROFILE, clock=clock.time, serial=f"SIM{i:04d}") for i in range(devices)]
    pollers = []
    for i, sim in enumerate(sims):
        link = Link(transport="tcp", host="127.0.0.1", port=10_000 + i)
        endpoint = Endpoint(link, engine.lane(f"modbus.{link.key}", gap=profile.quirks.request_gap))
        endpoint.client = ImageClient(sim)  # connected already: ensure() hands it out, reset() drops it
        poller = Poller(engine, gw.bus, f"inv{i}", profile, endpoint, unit=profile.quirks.unit_id, interval=interval)
        poller.start(delay=i * interval / max(1, devices))  # spread over the interval, as a gateway's boot does
        pollers.append(poller)

    def acked(store: OutboxStore) -> int:
        return store.delete([row.id for row in store.take(500)])

    # HARVEST class: the gateway has no uplink service here, so its state is offline and uplink classes are held.
    engine.every(ack, lambda now: ob.run(acked, kind="soak.ack"), first=ack, kind="soak.ack", cls=TaskClass.HARVEST)
    samples: list[Sample] = []
    steps_per_hour = round(3600 / step)
    try:
        for hour in range(1, int(hours) + 1):
            for _ in range(steps_per_hour):
                clock.advance(step)
                settle(gw)
            gc.collect()  # what is left is live, not garbage waiting for a collection
            stats = engine.stats()
            snap = gw.bus.latest("inv0")
            sample = Sample(
                hour=hour,
                traced_kb=tracemalloc.get_traced_memory()[0] / 1024,
                rss_mb=rss_mb(),
                queue_depth=stats["queue_depth"],
                workers_queued=stats["workers"]["queued"],
                outbox_rows=ob.store.rows,
                journal_rows=ob.store.journal_rows,
                pending=tele.pending(),
                polls=sum(p.health.polls for p in pollers),
                records=tele.records,
                pv_w=float(snap.points["pv.power_w"].value or 0.0) if snap and "pv.power_w" in snap.points else 0.0,
            )
            samples.append(sample)
            if on_hour is not None:
                on_hour(sample)
    finally:
        for p in pollers:
            p.stop()
        gw.stop()
        gw.engine.wait_stopped(5)
    return samples


def growth(samples: list[Sample], base_hour: int = 2) -> dict[str, float]:
    """Last hour minus the base hour, per measure (absolute)."""
    base = next(s for s in samples if s.hour == base_hour)
    last = samples[-1]
    return {
        "traced_kb": last.traced_kb - base.traced_kb,
        "rss_mb": last.rss_mb - base.rss_mb,
        "queue_depth": last.queue_depth - base.queue_depth,
        "outbox_rows": last.outbox_rows - base.outbox_rows,
        "journal_rows": last.journal_rows - base.journal_rows,
    }


def main() -> int:
    """Run the day, print one line per hour, the growth, and write the common JSON."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hours", type=float, default=24.0, help="simulated hours (at least 3)")
    ap.add_argument("--devices", type=int, default=10)
    ap.add_argument("--interval", type=float, default=10.0, help="poll interval, s (the device default)")
    ap.add_argument("--batch", type=float, default=10.0, help="telemetry.batch_interval, s (the default)")
    ap.add_argument("--ack", type=float, default=10.0, help="seconds between the stand-in uplink's acks")
    args = ap.parse_args()
    if args.hours < 3:
        ap.error("--hours: at least 3 (hour 2 is the baseline)")
    print(
        f"soak: {args.hours:g} simulated h, {args.devices} x {PROFILE} polled every {args.interval:g} s, "
        f"batches every {args.batch:g} s, acks every {args.ack:g} s"
    )
    print(
        f"{'hour':>4} {'traced KB':>9} {'RSS MB':>6} {'queue':>5} {'outbox':>6} {'journal':>7} {'polls':>7} {'PV W':>6}"
    )

    def show(s: Sample) -> None:
        print(
            f"{s.hour:>4} {s.traced_kb:>9.0f} {s.rss_mb:>6.1f} {s.queue_depth:>5} {s.outbox_rows:>6} "
            f"{s.journal_rows:>7} {s.polls:>7} {s.pv_w:>6.0f}",
            flush=True,
        )

    tracemalloc.start()
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        samples = soak(Path(tmp) / "gw", args.hours, args.devices, args.interval, args.batch, args.ack, on_hour=show)
    wall = time.monotonic() - t0
    tracemalloc.stop()
    g = growth(samples)
    base, last = samples[1], samples[-1]
    hours = last.hour - base.hour
    print(
        f"growth hour {base.hour} -> {last.hour}: traced {g['traced_kb']:+.0f} KB "
        f"({g['traced_kb'] / hours:+.1f} KB/h), RSS {g['rss_mb']:+.1f} MB, queue depth {g['queue_depth']:+d}, "
        f"outbox rows {g['outbox_rows']:+d}, journal rows {g['journal_rows']:+d}"
    )
    print(f"{last.polls:,} polls, {last.records:,} readings signed, in {wall:.0f} s wall ({3600 * hours / wall:.0f}x)")
    targets = {
        "traced memory: less than 1 MB more at the last hour than at hour 2": g["traced_kb"] < 1024,
        "engine queue depth: no growth": g["queue_depth"] <= 0,
        "outbox and journal rows: no growth": g["outbox_rows"] <= 0 and g["journal_rows"] <= 0,
    }
    for name, ok in targets.items():
        print(f"target {name}: {'met' if ok else 'NOT met'}")
    keys = ("traced_kb", "rss_mb", "queue_depth", "outbox_rows", "journal_rows")
    from bench.common import write_result

    write_result(
        "soak_day",
        {f"{k}_h{last.hour}": getattr(last, k) for k in keys}
        | {"polls": last.polls, "readings": last.records, "wall_s": wall, "speedup": 3600 * last.hour / wall},
        {f"{k}_h{base.hour}": getattr(base, k) for k in keys},
        {
            f"traced_memory_h{last.hour}_vs_h{base.hour}": last.traced_kb / base.traced_kb,
            f"rss_h{last.hour}_vs_h{base.hour}": last.rss_mb / base.rss_mb,
        },
        targets,
    )
    return 0 if all(targets.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
