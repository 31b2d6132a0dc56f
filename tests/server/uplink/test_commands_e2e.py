"""Signed commands over real MQTT: accepted ones answered, bad ones rejected with a reason."""

import json
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from server.crypto.jws import sign_compact
from server.crypto.software import SoftwareSigner
from server.statemachine import State
from tests.support import wait_for

pytestmark = pytest.mark.integration


def test_commands_accepted_and_rejected(mosquitto, gateway_factory, consumer_factory, tmp_path):
    backend = SoftwareSigner.generate()
    key_file = tmp_path / "backend.pem"
    key_file.write_text(backend.public_pem())
    consumer = consumer_factory(mosquitto)
    gw = gateway_factory(mosquitto, mqtt__backend_key=str(key_file), mqtt__password="hunter2", mqtt__username="u")
    wait_for(lambda: gw.state is State.ONLINE, 10, why=lambda: str(gw.services["uplink"].stats()))
    gid = gw.services["identity"].device_id
    now = time.time()

    def cmd(cid, name="ping", exp=now + 60, gw_id=gid, signer=backend, **extra):
        body = {"id": cid, "cmd": name, "exp": exp, "gw": gw_id, **extra}
        return sign_compact(signer, {"typ": "ohm.cmd"}, body)

    sends = [
        cmd("c-ping"),
        cmd("c-settings", "settings.get", args={"keys": ["mqtt.password", "mqtt.host", "telemetry.batch_interval"]}),
        cmd("c-ping"),  # replay
        cmd("c-expired", exp=now - 1),
        cmd("c-other", gw_id="ohm-someoneelse"),
        cmd("c-forged", signer=SoftwareSigner.generate()),
        cmd("c-unknown", "reboot.now"),
        cmd("c-far", exp=now + 10 * 86400),
        json.dumps({"id": "c-unsigned", "cmd": "ping", "exp": now + 60}),
        "not json, not a jws",
    ]
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="backend-cmd")
    client.connect("127.0.0.1", mosquitto.port)
    client.loop_start()
    try:
        for body in sends:
            client.publish(f"ohm/{gid}/cmd", body, qos=1).wait_for_publish(2)
            time.sleep(0.05)  # keep them in order (the replay must come after the first)
    finally:
        client.disconnect()
        client.loop_stop()

    def results():
        out = {}
        for cid, body in consumer.store.query("SELECT id, body FROM results ORDER BY rowid"):
            out.setdefault(cid, json.loads(body))  # the first answer per id (the replay comes later)
        return out

    wait_for(lambda: len(consumer.store.query("SELECT 1 FROM results")) == len(sends))
    got = results()
    assert got["c-ping"]["ok"] is True and got["c-ping"]["result"]["pong"] is True
    settings = got["c-settings"]["result"]
    assert settings == {"mqtt.host": "127.0.0.1", "mqtt.password": "(set)", "telemetry.batch_interval": "0.1"}
    reasons = {cid: r.get("reason") for cid, r in got.items() if not r["ok"]}
    rows = consumer.store.query("SELECT id, ok, body FROM results WHERE id = 'c-ping' ORDER BY received")
    assert [r[1] for r in rows] == [1, 0] and json.loads(rows[1][2])["reason"] == "replayed"
    assert reasons["c-expired"] == "expired"
    assert reasons["c-other"] == "wrong gateway"
    assert reasons["c-forged"] == "bad signature"
    assert reasons["c-unknown"].startswith("unknown command")
    assert reasons["c-far"].startswith("expiry too far ahead")
    assert reasons["c-unsigned"].startswith("unsigned")
    assert reasons[None].startswith("malformed")
    assert "hunter2" not in json.dumps(got)
    assert gw.services["uplink"].counters["rejected"] == 8
