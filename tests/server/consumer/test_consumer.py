import os
import subprocess
import sys
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from server.consumer import Consumer, ConsumerStore
from server.consumer.consumer import ConsumerSettings
from server.crypto.software import SoftwareSigner
from server.telemetry.envelope import ChainState, build_batch

ROOT = Path(__file__).resolve().parents[3]


def _batches(n):
    signer = SoftwareSigner.generate()
    state, out = ChainState(), []
    for i in range(n):
        token, state, _ = build_batch(signer, state, [{"d": "x", "t": 1.0 + i, "on": True}], now=1.0, synced=True)
        out.append(token)
    return signer.device_id, out


def test_handle_dedups_and_rejects(tmp_path):
    store = ConsumerStore(tmp_path / "c.sqlite")
    c = Consumer(ConsumerSettings(), store)
    gid, tokens = _batches(3)
    topic = f"ohm/{gid}/telemetry"
    assert [c.handle(topic, t.encode()) for t in (tokens[0], tokens[0], tokens[2], tokens[1])] == [
        "new",
        "duplicate",
        "new",
        "new",
    ]
    assert store.sequences(gid) == [1, 2, 3]
    assert c.handle(topic, b"junk") == "rejected"
    assert store.query("SELECT COUNT(*) FROM rejected")[0][0] == 1
    # stored under another gateway's topic: kept, but flagged
    c.handle("ohm/ohm-other/telemetry", _batches(1)[1][0].encode())
    assert store.query("SELECT problems FROM batches WHERE problems IS NOT NULL")[0][0].startswith("published under")
    store.close()


@pytest.mark.integration
def test_consume_cli_stores_what_it_receives(mosquitto, tmp_path):
    db = tmp_path / "c.sqlite"
    proc = subprocess.Popen(
        [sys.executable, "-m", "server", "consume", "--port", str(mosquitto.port), "--db", str(db), "--run-for", "20"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        gid, tokens = _batches(4)
        client = mqtt.Client(CallbackAPIVersion.VERSION2)
        client.connect("127.0.0.1", mosquitto.port)
        client.loop_start()
        deadline = time.monotonic() + 10
        stored: list[int] = []
        while time.monotonic() < deadline and len(stored) < 4:
            for t in tokens:  # repeated until the consumer has subscribed; duplicates are fine
                client.publish(f"ohm/{gid}/telemetry", t, qos=1).wait_for_publish(2)
            time.sleep(0.2)
            if db.exists():
                s = ConsumerStore(db)
                stored = s.sequences(gid)
                s.close()
        client.disconnect()
        client.loop_stop()
        assert stored == [1, 2, 3, 4]
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "'readings': 4" in out
