"""Poller scheduling with a fake clock: cadence, backoff cap, stale values, events once each."""

from __future__ import annotations

import itertools
import random

from server.bus import Bus, DeviceEvent, Quality, Snapshot
from server.devices.poller import Poller
from server.devices.profile import load_profile
from server.devices.transport import DeviceIOError, Endpoint, Link
from server.engine import Engine, FakeClock


class ScriptedClient:
    """Answers every read with zeros, or fails while `down` is set (a stand-in for the wire)."""

    def __init__(self) -> None:
        self.down = False
        self.reads = 0

    def read(self, fc: int, address: int, count: int, unit: int) -> list[int]:
        self.reads += 1
        if self.down:
            raise DeviceIOError("timeout")
        return [0] * count

    def close(self) -> None:
        pass


class ScriptedEndpoint(Endpoint):
    def __init__(self, engine: Engine, client: ScriptedClient) -> None:
        super().__init__(Link("tcp", host="127.0.0.1"), engine.lane("test"))
        self.scripted = client
        self.resets = 0

    def ensure(self, unit: int) -> ScriptedClient:  # type: ignore[override]
        return self.scripted

    def reset(self) -> None:
        self.resets += 1


def settle(engine: Engine) -> None:
    for _ in range(20):
        engine.run_pending()
        assert engine.pool.join_idle(5)
        if not engine.run_pending():
            return


def make(interval: float = 5.0) -> tuple[Engine, Bus, ScriptedClient, Poller, list[Snapshot], list[DeviceEvent]]:
    engine = Engine(FakeClock(), workers=2)
    bus = Bus()
    client = ScriptedClient()
    poller = Poller(
        engine,
        bus,
        "d1",
        load_profile("sma"),
        ScriptedEndpoint(engine, client),
        unit=3,
        interval=interval,
        backoff_base=1.0,
        backoff_cap=10.0,
        rng=random.Random(7),
    )
    snaps: list[Snapshot] = []
    events: list[DeviceEvent] = []
    bus.on_snapshot(snaps.append)
    bus.on_event(events.append)
    return engine, bus, client, poller, snaps, events


def step(engine: Engine, seconds: float) -> None:
    engine.advance(seconds)
    settle(engine)


def test_polls_at_its_interval_and_publishes() -> None:
    engine, _, client, poller, snaps, events = make(interval=5.0)
    poller.start()
    settle(engine)
    assert len(snaps) == 1 and snaps[0].online
    for _ in range(4):
        step(engine, 5.0)
    assert len(snaps) == 5
    assert [round(b.mono - a.mono, 6) for a, b in itertools.pairwise(snaps)] == [5.0] * 4
    assert [e.kind for e in events] == ["online"]
    assert client.reads == 5 * 4  # the SMA profile plans four reads


def test_interval_has_a_floor_of_one_second() -> None:
    _, _, _, poller, _, _ = make(interval=0.1)
    assert poller.interval == 1.0


def test_failure_marks_stale_backs_off_capped_and_recovers_once() -> None:
    engine, _, client, poller, snaps, events = make(interval=5.0)
    poller.start()
    settle(engine)
    client.down = True
    step(engine, 5.0)
    assert not snaps[-1].online and snaps[-1].error == "timeout"
    assert {p.quality for p in snaps[-1].points.values()} == {Quality.STALE}
    failed_at = [snaps[-1].mono]
    for _ in range(12):  # let it retry a dozen times
        before = len(snaps)
        while len(snaps) == before:
            step(engine, 0.25)
        failed_at.append(snaps[-1].mono)
    gaps = [b - a for a, b in itertools.pairwise(failed_at)]
    assert all(g <= 10.0 + 0.25 for g in gaps), gaps  # capped at 10 s
    assert gaps[-1] >= 5.0 - 0.25  # grew to the cap (jitter keeps it within [0.5, 1] x cap)
    assert gaps[0] < gaps[-1]
    client.down = False
    back = engine.clock.monotonic()
    while not snaps[-1].online:
        step(engine, 0.25)
    assert snaps[-1].mono - back <= 10.25
    kinds = [e.kind for e in events]
    assert kinds == ["online", "offline", "recovered"]
    assert poller.health.failures == 13 and poller.health.consecutive_failures == 0


def test_stop_cancels_future_polls() -> None:
    engine, _, _, poller, snaps, _ = make(interval=5.0)
    poller.start()
    settle(engine)
    poller.stop()
    step(engine, 30.0)
    assert len(snaps) == 1
