"""A P1 meter's readings take the same path as a Modbus device's: bus -> signed telemetry -> outbox."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from modbus_slave.p1 import P1Simulator
from server.config import load
from server.crypto.service import attach as identity
from server.devices import attach as devices
from server.gateway import Gateway
from server.outbox.service import attach as outbox
from server.outbox.store import OutboxStore
from server.telemetry.service import attach as telemetry
from server.telemetry.verify import Ledger
from tests.support import wait_for

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "dsmr"


@pytest.mark.integration
def test_p1_readings_reach_the_outbox_signed(tmp_path: Path) -> None:
    sim = P1Simulator([(FIXTURES / "v5.txt").read_bytes()], period=0.1).serve_tcp().start()
    overrides = {"data_dir": tmp_path, "stats_interval": 0, "telemetry.batch_interval": 0.1, "api.port": 0}
    gw = Gateway(load(None, env={}, overrides=overrides), services=[identity, outbox, telemetry, devices])
    try:
        gw.start()
        gw.engine.start_thread()
        dev = {"id": "p1", "profile": "dsmr", "transport": "p1_tcp", "host": "127.0.0.1", "port": sim.port}
        gw.services["devices"].add({**dev, "interval": 1})
        wait_for(lambda: (s := gw.services["devices"].snapshot("p1")) and s.online)
        wait_for(lambda: gw.services["outbox"].stats()["rows"] >= 1)
    finally:
        gw.stop()
        gw.engine.wait_stopped(5)
        sim.stop()
    store = OutboxStore(tmp_path / "outbox.sqlite")
    rows = store.take(100)
    store.close()
    assert rows
    ledger = Ledger()
    verdicts = [ledger.check(r.payload.decode()) for r in rows]
    signed = [v for v in verdicts if not any("is not ohm.telemetry" in p for p in v.problems)]  # not events
    assert signed and all(v.ok for v in signed), [v.problems for v in signed]
    payloads = [json.loads(base64.urlsafe_b64decode(r.payload.split(b".")[1] + b"==")) for r in rows]
    text = json.dumps(payloads)
    assert '"p1"' in text and "grid.power_w" in text and "gas.volume_m3" in text and "246.138" in text
