"""Inverter links: offline cold start, one flapping device among healthy ones, garbage Modbus replies."""

from __future__ import annotations

import itertools
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modbus_slave.faults import Fault
from modbus_slave.server import Simulator
from server.bus import Snapshot
from server.config import load
from server.crypto.service import attach as identity
from server.devices import attach as devices
from server.devices.store import DeviceConfig, DeviceStore
from server.gateway import Gateway
from server.outbox.service import attach as outbox
from server.telemetry.service import attach as telemetry
from server.uplink.service import attach as uplink
from tests.support import NOON, wait_for

from .conftest import SCALE, report
from .gateways import free_port
from .proxy import Flapper, schedule
from .test_broker_outages import reconnect_delays

pytestmark = pytest.mark.integration

RECOVERY_BOUND = 15.0  # seconds from the link's return to a good reading (the spec's figure, not scaled)


class Polls:
    """Every snapshot a gateway publishes, by device: (monotonic time, online)."""

    def __init__(self) -> None:
        self.by_device: dict[str, list[tuple[float, bool]]] = defaultdict(list)
        self._lock = threading.Lock()

    def __call__(self, snap: Snapshot) -> None:
        with self._lock:
            self.by_device[snap.device_id].append((time.monotonic(), snap.online))

    def good(self, device: str, after: float = 0.0) -> list[float]:
        with self._lock:
            return [t for t, ok in self.by_device[device] if ok and t >= after]


@pytest.fixture
def sims() -> Iterator[list[Simulator]]:
    made = [Simulator("sma", clock=lambda: NOON, serial=f"SIM{i}").start() for i in range(4)]
    try:
        yield made
    finally:
        for s in made:
            s.stop()


def _gateway(tmp_path: Path, ports: list[int], mqtt_port: int = 0, **settings: Any) -> tuple[Gateway, Polls]:
    data = tmp_path / "gw"
    data.mkdir(mode=0o700, exist_ok=True)
    store = DeviceStore(data / "devices.sqlite")
    for i, port in enumerate(ports):
        store.put(
            DeviceConfig.from_dict(
                {"id": f"dev{i}", "profile": "sma", "host": "127.0.0.1", "port": port, "interval": 1}
            )
        )
    store.close()
    overrides: dict[str, Any] = {
        "data_dir": data,
        "stats_interval": 0,
        "identity.backend": "software",
        "telemetry.batch_interval": 0.5,
        "mqtt.host": "127.0.0.1" if mqtt_port else "",
        "mqtt.port": mqtt_port or 1883,
        **settings,
    }
    gw = Gateway(load(None, env={}, overrides=overrides), services=[devices, identity, outbox, telemetry, uplink])
    polls = Polls()
    gw.bus.on_snapshot(polls)
    return gw, polls


def test_offline_cold_start_harvests_stored_devices_at_once(sims, tmp_path):
    # A broker address where nothing listens: no backend, no internet.
    gw, polls = _gateway(tmp_path, [s.port for s in sims], mqtt_port=free_port())
    t0 = time.monotonic()
    gw.start()
    gw.engine.start_thread()
    try:
        wait_for(lambda: all(polls.good(f"dev{i}") for i in range(len(sims))), 5)
        first = max(polls.good(f"dev{i}")[0] for i in range(len(sims))) - t0
        wait_for(lambda: gw.services["outbox"].store.rows >= 2, 5)  # signed and kept for later
        assert gw.state.value == "offline"
        assert first < 2.0
    finally:
        gw.stop()
        gw.engine.wait_stopped(5)
    report("offline_cold_start", devices=len(sims), first_reading_all_devices_s=round(first, 3))


def test_one_flapping_device_leaves_the_others_on_cadence_and_recovers(sims, proxy_factory, tmp_path):
    link = proxy_factory(sims[0].port)  # dev0's inverter link runs through the fault proxy
    gw, polls = _gateway(tmp_path, [link.port] + [s.port for s in sims[1:]])
    gw.start()
    gw.engine.start_thread()
    try:
        wait_for(lambda: all(polls.good(f"dev{i}") for i in range(len(sims))), 5)
        start = time.monotonic()
        flapper = Flapper(link, schedule("A", scale=SCALE, cycles=2, seed=4)).start()
        flapper.join(60)
        back = list(flapper.restores())
        wait_for(lambda: polls.good("dev0", after=back[-1]), RECOVERY_BOUND + 1)
        time.sleep(1.2)
        end = time.monotonic()
    finally:
        gw.stop()
        gw.engine.wait_stopped(5)
    # Judged within each up phase (a short phase may end before the device's backoff does); the last is open.
    recoveries, too_short = reconnect_delays(flapper, polls.good("dev0"), RECOVERY_BOUND)
    assert recoveries and max(recoveries) < RECOVERY_BOUND, recoveries
    assert any(not ok for _, ok in polls.by_device["dev0"])  # the outages were seen
    gaps = []
    for i in range(1, len(sims)):
        times = [t for t in polls.good(f"dev{i}") if start <= t <= end]
        gaps += [b - a for a, b in itertools.pairwise(times)]
        assert all(ok for t, ok in polls.by_device[f"dev{i}"] if start <= t <= end)
    assert max(gaps) < 1.6, max(gaps)  # 1 s cadence kept while dev0 fails
    report(
        "flapping_device",
        outages=len(back),
        recovery_s_max=round(max(recoveries), 3),
        recovery_s=[round(r, 2) for r in recoveries],
        up_phases_too_short_to_judge=too_short,
        healthy_interval_s_max=round(max(gaps), 3),
        healthy_interval_s_mean=round(sum(gaps) / len(gaps), 3),
    )


def test_garbage_modbus_replies_do_not_crash_and_the_device_recovers(sims, tmp_path):
    gw, polls = _gateway(tmp_path, [s.port for s in sims[:2]])
    gw.start()
    gw.engine.start_thread()
    try:
        wait_for(lambda: polls.good("dev0") and polls.good("dev1"), 5)
        for fault in (Fault("garbage", rate=0.5, seed=9), Fault("exception", value=4)):
            sims[0].set_fault(fault)
            bad_from = time.monotonic()
            wait_for(lambda t=bad_from: any(not ok and s >= t for s, ok in polls.by_device["dev0"]), 15)
            sims[0].set_fault(None)
            healed = time.monotonic()
            wait_for(lambda t=healed: polls.good("dev0", after=t), RECOVERY_BOUND)
        health = gw.services["devices"].health("dev0")
        assert health["online"] and gw.engine.state == "running"
        assert polls.good("dev1", after=bad_from)  # the other device was never held up
    finally:
        gw.stop()
        gw.engine.wait_stopped(5)
