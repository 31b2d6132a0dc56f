"""Device commands end to end: signed commands over mosquitto -> gateway -> simulator -> signed results."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from modbus_slave.server import Simulator
from server.config import load
from server.consumer import Consumer, ConsumerStore
from server.consumer.consumer import ConsumerSettings
from server.crypto.jws import sign_compact
from server.crypto.service import attach as identity
from server.crypto.software import SoftwareSigner
from server.devices import attach as devices
from server.gateway import Gateway
from server.outbox.service import attach as outbox
from server.statemachine import State
from server.telemetry.service import attach as telemetry
from server.uplink.service import attach as uplink
from tests.support import wait_for

pytestmark = pytest.mark.integration


def closed_port() -> int:
    """A loopback port nobody listens on (bound once, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Backend:
    """Signs commands with the backend key, publishes them on /cmd and waits for the verified result."""

    def __init__(self, signer: SoftwareSigner, gid: str, port: int, consumer: Consumer) -> None:
        self.signer, self.gid, self.consumer = signer, gid, consumer
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="backend-cmd")
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.seq = 0

    def ask(self, name: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        self.seq += 1
        cid = f"c-{self.seq}"
        body = {"id": cid, "cmd": name, "args": args or {}, "exp": time.time() + 60, "gw": self.gid}
        token = sign_compact(self.signer, {"typ": "ohm.cmd"}, body)
        self.client.publish(f"ohm/{self.gid}/cmd", token, qos=1).wait_for_publish(2)
        rows = wait_for(lambda: self.consumer.store.query("SELECT body FROM results WHERE id = ?", (cid,)), 8)
        return json.loads(rows[0][0])

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def backend(mosquitto: Any, tmp_path: Path) -> Iterator[tuple[Backend, Gateway]]:
    signer = SoftwareSigner.generate()
    key_file = tmp_path / "backend.pem"
    key_file.write_text(signer.public_pem())
    store = ConsumerStore(tmp_path / "consumer.sqlite")
    consumer = Consumer(ConsumerSettings(port=mosquitto.port, client_id="consumer"), store).start()
    overrides = {
        "data_dir": tmp_path / "gw",
        "stats_interval": 0,
        "telemetry.batch_interval": 0.1,
        "mqtt.backoff_max": 1.0,
        "identity.backend": "software",
        "mqtt.host": "127.0.0.1",
        "mqtt.port": mosquitto.port,
        "mqtt.backend_key": str(key_file),
    }
    gw = Gateway(load(None, env={}, overrides=overrides), services=[devices, identity, outbox, telemetry, uplink])
    bk: Backend | None = None
    try:
        gw.start()
        gw.engine.start_thread()
        wait_for(consumer.connected.is_set, 5)
        wait_for(lambda: gw.state is State.ONLINE, 10, why=lambda: str(gw.services["uplink"].stats()))
        bk = Backend(signer, gw.services["identity"].device_id, mosquitto.port, consumer)
        yield bk, gw
    finally:
        if bk is not None:
            bk.close()
        gw.stop()
        gw.engine.wait_stopped(5)
        consumer.stop()
        store.close()


def test_modbus_read_write_and_refusals(backend: tuple[Backend, Gateway], sim: Simulator) -> None:
    bk, gw = backend
    svc = gw.services["devices"]
    svc.add({"id": "inv", "profile": "sma", "host": "127.0.0.1", "port": sim.port, "interval": 5})
    svc.add({"id": "gone", "profile": "sma", "host": "127.0.0.1", "port": closed_port(), "interval": 5})

    got = bk.ask("modbus.read", {"device": "inv", "fc": 4, "address": 30775, "type": "int32"})
    image = sim.image()
    assert got["ok"] is True, got
    assert got["result"] == {
        "device": "inv",
        "fc": 4,
        "address": 30775,
        "registers": [image[(4, 30775)], image[(4, 30776)]],
        "value": 4800,
    }

    got = bk.ask("modbus.write", {"device": "inv", "address": 40915, "value": 3000})
    assert got["ok"] is True, got
    assert got["result"]["point"] == "control.power_limit_w" and got["result"]["registers"] == [0, 3000]
    assert sim.written == {40915: 0, 40916: 3000}  # applied on the device
    back = bk.ask("modbus.read", {"device": "inv", "address": 40915, "count": 2, "type": "uint32"})
    assert back["ok"] is True and back["result"]["value"] == 3000

    refused = bk.ask("modbus.write", {"device": "inv", "address": 30775, "value": 1})
    assert refused["ok"] is False
    assert refused["reason"].startswith("address 30775 is not writable on sma (writable: 40915")
    too_big = bk.ask("modbus.write", {"device": "inv", "address": 40915, "value": 200_000})
    assert too_big["ok"] is False and "outside [0, 100000]" in too_big["reason"]
    assert sim.written == {40915: 0, 40916: 3000}  # refused writes never reached the device

    unknown = bk.ask("modbus.read", {"device": "nope", "address": 0})
    assert unknown == {**unknown, "ok": False, "reason": "unknown device 'nope'"}
    bad = bk.ask("modbus.read", {"device": "inv", "address": 70000})
    assert bad["ok"] is False and bad["reason"].startswith("address: must be an integer 0-65535")
    offline = bk.ask("modbus.read", {"device": "gone", "fc": 4, "address": 30775, "count": 2})
    assert offline["ok"] is False and offline["reason"].startswith("device offline or not answering")

    listed = bk.ask("devices.list")
    assert listed["ok"] is True
    assert sorted(d["id"] for d in listed["result"]["devices"]) == ["gone", "inv"]


def test_scan_by_command(backend: tuple[Backend, Gateway], sim: Simulator) -> None:
    bk, _gw = backend
    started = bk.ask("devices.scan", {"hosts": "127.0.0.1", "ports": [sim.port], "units": [3], "timeout": 0.5})
    assert started["ok"] is True, started
    scan_id = started["result"]["scan_id"]

    def finished() -> dict[str, Any] | None:
        status = bk.ask("devices.scan_status", {"scan_id": scan_id})
        return status if status["ok"] and status["result"]["finished"] else None

    status = wait_for(finished, 10)["result"]
    assert status["done"] == status["total"] == 1
    assert [(f["port"], f["unit_id"], f["profile"]) for f in status["found"]] == [(sim.port, 3, "sma")]
    assert bk.ask("devices.scan_status", {"scan_id": "scan-99"})["reason"] == "unknown scan 'scan-99'"
