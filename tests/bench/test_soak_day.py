"""A compressed simulated day (bench/soak_day.py): memory and queues stay flat from hour 2 to hour 24.

Real engine, pollers, telemetry and outbox (SQLite) on a fake clock; the registers come from the
simulator's image at the fake time (its daylight curve). 2 devices polled every 120 s keep it under
~15 s here; the leak test shows the same check fails when something does keep every snapshot.
"""

from __future__ import annotations

import shutil
import tempfile
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.soak_day import Sample, growth, soak
from server.bus import Snapshot
from server.gateway import Gateway

DEVICES, INTERVAL = 2, 120.0
# Allowed growth of traced memory per simulated hour after hour 2: windows that fill up (lateness,
# per-poller deques) level off; a leak of one snapshot per poll is ~100x this.
KB_PER_HOUR = 8.0


@pytest.fixture
def traced() -> Iterator[None]:
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    """On tmpfs when there is one: the outbox syncs every commit, and disk latency is not what is tested here."""
    shm = Path("/dev/shm")
    if not shm.is_dir():
        yield tmp_path / "gw"
        return
    d = Path(tempfile.mkdtemp(dir=shm, prefix="ohm-soak-"))
    try:
        yield d / "gw"
    finally:
        shutil.rmtree(d, ignore_errors=True)


def run(data: Path, hours: int, setup=None) -> list[Sample]:  # type: ignore[no-untyped-def]
    # Steps of INTERVAL / DEVICES: every poll slot (spread evenly), batch and ack falls on a step.
    return soak(
        data, hours, DEVICES, interval=INTERVAL, batch=INTERVAL, ack=INTERVAL, step=INTERVAL / DEVICES, setup=setup
    )


def test_a_compressed_day_grows_neither_memory_nor_queues(data_dir: Path, traced: None) -> None:
    samples = run(data_dir, 24)
    assert [s.hour for s in samples] == list(range(1, 25))
    last = samples[-1]
    assert last.polls >= DEVICES * 24 * 3600 / INTERVAL - DEVICES  # every slot polled
    assert last.records >= last.polls - DEVICES * 2  # and signed (the last batch may still be pending)
    by_hour = {s.hour: s for s in samples}
    assert by_hour[2].pv_w == 0 and by_hour[13].pv_w > 1000  # the simulator's night and noon were harvested
    g = growth(samples)
    assert g["queue_depth"] <= 0, samples
    assert g["outbox_rows"] <= 0 and g["journal_rows"] <= 0, samples
    assert max(s.outbox_rows for s in samples) <= DEVICES * 2  # the stand-in uplink keeps up
    assert g["traced_kb"] / 22 < KB_PER_HOUR, [round(s.traced_kb) for s in samples]


def test_the_growth_check_catches_a_leak(data_dir: Path, traced: None) -> None:
    kept: list[Snapshot] = []

    def leak(gw: Gateway) -> None:
        gw.bus.on_snapshot(kept.append)

    samples = run(data_dir, 3, setup=leak)
    assert len(kept) == samples[-1].polls
    assert growth(samples)["traced_kb"] / 1 >= KB_PER_HOUR, [round(s.traced_kb) for s in samples]
