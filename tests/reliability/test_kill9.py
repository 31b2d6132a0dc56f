"""kill -9 of a real gateway process at random moments (polling, draining, writing settings), many times:
settings stay valid, no acknowledged reading is lost, and every restart harvests again with or without
a backend. "Acknowledged" is defined in docs/reliability.md: committed to the gateway's SQLite."""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from http.client import HTTPException
from pathlib import Path

import pytest

from modbus_slave.faults import Fault
from modbus_slave.server import Simulator
from server.devices.store import DeviceConfig, DeviceStore
from server.settings import read_file
from tests.support import NOON, wait_for

from .conftest import report
from .gateways import Zygote, committed_readings, free_port, http, outbox_state, wait_healthy

pytestmark = pytest.mark.integration

KILLS = int(os.environ.get("RELIABILITY_KILLS", "50"))


class SettingsWriter:
    """PATCHes the gateway's name over the API in a loop; remembers what it sent and what was confirmed."""

    def __init__(self, port: int, token: str, tag: str) -> None:
        self.port, self.token, self.tag = port, token, tag
        self.sent: list[str] = []
        self.confirmed: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            name = f"{self.tag}-{i}"
            self.sent.append(name)
            try:
                status, _ = http(self.port, "PATCH", "/api/settings", self.token, {"name": name}, timeout=2.0)
            except (OSError, HTTPException):
                return  # killed mid-request
            if status == 200:
                self.confirmed.append(name)
            i += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def _last_poll(api: int, token: str | None, device: str) -> float:
    """Wall time of the device's latest snapshot (0 before the first)."""
    body = http(api, "GET", f"/api/devices/{device}/readings", token)[1] or {}
    return float((body.get("snapshot") or {}).get("ts", 0))


@pytest.fixture
def sims():
    units = (1, 2, 3, 4)  # four devices behind each endpoint (one bus, one lane each): 12 readings/s
    made = [
        Simulator("sma", clock=lambda: NOON, unit_ids=units).start(),
        Simulator("sma", clock=lambda: NOON, unit_ids=units, fault=Fault("delay", value=0.02)).start(),  # slow polls
        Simulator("fronius", clock=lambda: NOON, unit_ids=units).start(),
    ]
    try:
        yield made
    finally:
        for s in made:
            s.stop()


@pytest.fixture
def zygote():
    z = Zygote()
    try:
        yield z
    finally:
        z.close()


def test_kill_9_at_random_moments_loses_no_acknowledged_reading(
    sims, zygote, mosquitto_factory, proxy_factory, consumer_factory, tmp_path: Path
):
    broker = mosquitto_factory()
    consumer = consumer_factory(broker)
    link = proxy_factory(broker.port)
    link.set_delay(0.15)  # PUBACKs take a while: kills land with batches in flight
    data = tmp_path / "gw"
    data.mkdir(mode=0o700)
    store = DeviceStore(data / "devices.sqlite")
    for i, s in enumerate(sims):
        for unit in s.unit_ids:
            dev = {"id": f"dev{i}u{unit}", "profile": s.profile.key, "host": "127.0.0.1", "port": s.port}
            store.put(DeviceConfig.from_dict({**dev, "unit_id": unit, "interval": 1}))
    store.close()
    api = free_port()
    env = {
        "OHM_DATA_DIR": str(data),
        "OHM_API_HOST": "127.0.0.1",
        "OHM_API_PORT": str(api),
        "OHM_API_WS_PORT": "0",
        "OHM_MDNS_ENABLED": "false",
        "OHM_NETWORK_WIRED": "true",
        "OHM_STATS_INTERVAL": "0",
        "OHM_IDENTITY_BACKEND": "software",
        "OHM_MQTT_HOST": "127.0.0.1",
        "OHM_MQTT_PORT": str(link.port),
        "OHM_MQTT_BACKOFF_MAX": "0.5",
        "OHM_MQTT_BACKLOG_RATE": "3",  # slow drain of what offline lives left: kills land mid-drain
        "OHM_TELEMETRY_BATCH_INTERVAL": "0.1",
    }
    log = tmp_path / "gateway.log"
    rng = random.Random(int(os.environ.get("RELIABILITY_SEED", "8")))
    acknowledged: set[tuple[str, float]] = set()
    names_sent: list[str] = []
    starts: list[float] = []
    offline_rounds = 0
    mid_drain = 0
    token = None
    for rnd in range(KILLS):
        offline = rnd % 3 == 2  # every third life without any backend
        offline_rounds += offline
        (link.cut if offline else link.restore)()
        t_spawn = time.time()
        pid = zygote.spawn(env, log)
        starts.append(wait_healthy(api, log=log))
        if token is None:
            token = json.loads((data / "api_tokens.json").read_text())["admin"]
        # Harvesting resumes at once, backend or not: a fresh reading of a stored device.
        wait_for(
            lambda tok=token, t0=t_spawn: _last_poll(api, tok, "dev0u1") > t0,
            10,
            why=lambda: log.read_text()[-2000:],
        )
        writer = SettingsWriter(api, token, f"r{rnd}")
        time.sleep(rng.uniform(0.0, 0.5))
        acknowledged |= committed_readings(data)  # everything committed so far must reach the consumer
        if not offline and outbox_state(data)["rows"]:
            mid_drain += 1  # killed with rows waiting for, or in flight to, the broker
        zygote.kill(pid)
        writer.stop()
        names_sent += writer.sent
        # After the crash: the settings file is whole and holds a value some request sent.
        doc = read_file(data)
        stored = doc.get("settings", {}).get("name")
        assert stored is None or stored in names_sent, stored
        assert outbox_state(data)["ok"]
    # Last start with the backend: everything committed drains (at full speed now), then a clean stop.
    link.restore()
    env["OHM_MQTT_BACKLOG_RATE"] = "1000"
    pid = zygote.spawn(env, log)
    wait_healthy(api)
    wait_for(lambda: outbox_state(data)["rows"] == 0, 60, why=lambda: str(outbox_state(data)))
    zygote.kill(pid, signal.SIGTERM)
    final = outbox_state(data)
    if final["rows"] or final["journal"]:  # readings taken after the drain, stored at the clean stop
        pid = zygote.spawn(env, log)
        wait_healthy(api)
        wait_for(lambda: outbox_state(data)["rows"] == 0, 30)
        zygote.kill(pid, signal.SIGTERM)
        final = outbox_state(data)
    committed = final["committed"]
    (gid,) = consumer.ledger.gateways()
    wait_for(lambda: len(consumer.store.sequences(gid)) >= committed, 20)
    seqs = consumer.store.sequences(gid)
    assert seqs == list(range(1, committed + 1))  # every batch ever committed, each once, no gap
    assert not consumer.ledger.gaps(gid)
    delivered = {(d, float(t)) for d, t in consumer.store.query("SELECT device, ts FROM readings")}
    missing = acknowledged - delivered
    assert not missing, f"{len(missing)} acknowledged readings lost, e.g. {sorted(missing)[:3]}"
    assert "Traceback" not in log.read_text()
    assert mid_drain >= KILLS // 5, mid_drain  # the kills really landed during drains
    report(
        "kill9_random",
        kills=KILLS,
        offline_lives=offline_rounds,
        killed_mid_drain=mid_drain,
        acknowledged_checked=len(acknowledged),
        acknowledged_lost=len(missing),
        readings_delivered=len(delivered),
        sequence_numbers=committed,
        stored_duplicates=len(seqs) - len(set(seqs)),
        redelivered=consumer.counts["duplicate"],
        settings_writes_sent=len(names_sent),
        start_to_healthy_s_max=round(max(starts), 3),
    )
