"""Broker outage and kill -9: zero loss, duplicates only as detectable re-sends, order kept."""

import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from server.statemachine import State
from tests.support import wait_for

from .conftest import snap

pytestmark = pytest.mark.integration

PROC = Path(__file__).with_name("gateway_proc.py")


def test_broker_outage_loses_nothing_and_reconnects_fast(mosquitto_factory, gateway_factory, consumer_factory):
    broker = mosquitto_factory(persistence=True)
    consumer = consumer_factory(broker)
    gw = gateway_factory(broker, mqtt__backoff_max=10.0)  # the production cap
    wait_for(lambda: gw.state is State.ONLINE, 10, why=lambda: str(gw.services["uplink"].stats()))
    gid = gw.services["identity"].device_id
    stop = threading.Event()

    def feed() -> None:
        i = 0
        while not stop.is_set():
            gw.bus.publish(snap("inv1", i))
            i += 1
            time.sleep(0.005)

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        time.sleep(0.5)
        broker.stop()
        wait_for(lambda: gw.state is State.OFFLINE, 5)
        time.sleep(2.0)
        broker.start()
        back = time.monotonic()
        wait_for(lambda: gw.state is State.ONLINE, 12)
        reconnect = time.monotonic() - back
        time.sleep(0.5)
    finally:
        stop.set()
        feeder.join()
    print(f"reconnected {reconnect:.2f} s after the broker returned")  # shown with -s
    assert reconnect < 10.0
    tele, up, ob = gw.services["telemetry"], gw.services["uplink"], gw.services["outbox"]

    def state() -> str:
        return f"telemetry {tele.stats()}, uplink {up.stats()}, outbox {ob.stats()}, consumer {consumer.counts}"

    wait_for(lambda: tele.stats()["pending"] == 0 and ob.store.rows == 0, 15, why=state)
    last = tele.state.next_seq - 1
    wait_for(
        lambda: len(consumer.store.sequences(gid)) == last,
        15,
        why=lambda: f"{state()} gaps {consumer.ledger.gaps(gid)}",
    )
    assert consumer.store.sequences(gid) == list(range(1, last + 1))  # no loss, no duplicate rows
    # Order kept: along the sequence, the device's own counter only goes up.
    counters = [
        row[0]
        for row in consumer.store.query(
            "SELECT json_extract(data, '$.v.n') FROM readings WHERE gateway = ? ORDER BY seq", (gid,)
        )
    ]
    assert counters == sorted(counters) and len(set(counters)) == len(counters)
    assert not consumer.ledger.gaps(gid)
    assert gw.services["uplink"].counters["connects"] >= 2
    assert gw.services["uplink"]._protocol == mqtt.MQTTv5  # an outage is no reason to fall back to 3.1.1


def _spawn(data: Path, port: int, feed: float, rate: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, str(PROC), str(data), str(port), str(feed), str(rate)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def _kill9(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(5)


def _outbox(data: Path) -> tuple[int, int]:
    db = sqlite3.connect(data / "outbox.sqlite")
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
        meta = db.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()
        return rows, int(meta[0]) - 1 if meta else 0
    finally:
        db.close()


def test_kill_9_during_writes_and_drain_loses_nothing_committed(mosquitto_factory, consumer_factory, tmp_path):
    broker = mosquitto_factory()
    consumer = consumer_factory(broker)
    data = tmp_path / "gw"
    procs = []
    try:
        # 1. Offline, writing fast: killed mid-write.
        p = _spawn(data, 0, 2000, 1)
        procs.append(p)
        time.sleep(2.0)  # a backlog of ~40 batches: at 10 msg/s below it takes seconds to drain
        _kill9(p)
        rows, committed = _outbox(data)
        assert rows > 10 and committed > 100
        # 2. Draining slowly (and still writing): killed mid-drain.
        p = _spawn(data, broker.port, 500, 10)
        procs.append(p)
        wait_for(lambda: consumer.counts["new"] >= 10, 10)
        _kill9(p)
        rows, committed = _outbox(data)
        assert rows > 0  # really mid-drain
        # 3. Restarted: drains everything, then stops cleanly.
        p = _spawn(data, broker.port, 0, 1000)
        procs.append(p)
        wait_for(lambda: _outbox(data)[0] == 0, 20)
        p.send_signal(signal.SIGTERM)
        p.wait(10)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(5)
    _, committed = _outbox(data)
    (gid,) = consumer.ledger.gateways()
    wait_for(lambda: len(consumer.store.sequences(gid)) >= committed, 10)
    assert consumer.store.sequences(gid) == list(range(1, committed + 1))
    assert not consumer.ledger.gaps(gid)
