"""Hostile MQTT input on /cmd while telemetry flows: random bytes, broken JWS, an unsigned algorithm,
oversized payloads, replays (also across a restart). No crash, each answered with a reason, no reading lost.

REST fuzzing (schemathesis) is in tests/server/api/test_api_fuzz.py (API area) and malformed BLE frames
in the BLE tests (tests/bluetooth); this file covers the MQTT command path."""

from __future__ import annotations

import base64
import json
import random
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from server.crypto.jws import sign_compact
from server.crypto.software import SoftwareSigner
from server.statemachine import State
from tests.support import wait_for

from .conftest import Feeder, report

pytestmark = pytest.mark.integration


def _b64(obj: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def _hostile(rng: random.Random, gid: str, now: float) -> list[bytes]:
    body = {"id": "h", "cmd": "ping", "exp": now + 60, "gw": gid}
    out: list[bytes] = [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))) for _ in range(60)]
    out += [
        b"",
        b"\xff\xfe\xfd",
        b"a.b.c",
        b"..",
        b"x" * 256 * 1024,  # oversized
        f"{_b64({'alg': 'none'})}.{_b64(body)}.".encode(),  # the unsigned-algorithm trick
        f"{_b64({'alg': 'ES256'})}.{_b64(body)}.{'A' * 86}".encode(),  # a signature of zeros
        f"{_b64({'alg': 'HS256'})}.{_b64(body)}.c2ln".encode(),
        f"{_b64([1, 2])}.{_b64(body)}.c2ln".encode(),
        json.dumps({"id": "d" * 10_000, "cmd": "ping"}).encode(),
        (b"[" * 3000) + (b"]" * 3000),  # deep nesting
        b"{" * 5000,
    ]
    return out


def _publish(port: int, topic: str, payloads: list[bytes]) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"hostile-{random.random()}")
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        for p in payloads:
            client.publish(topic, p, qos=1).wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()


def test_hostile_commands_are_refused_without_harm(mosquitto_factory, gateway_factory, consumer_factory, tmp_path):
    broker = mosquitto_factory()
    consumer = consumer_factory(broker)
    backend = SoftwareSigner.generate()
    key = tmp_path / "backend.pem"
    key.write_text(backend.public_pem())
    gw = gateway_factory(broker.port, mqtt__backend_key=str(key))
    wait_for(lambda: gw.state is State.ONLINE, 30)
    gid = gw.services["identity"].device_id
    now = time.time()
    good = sign_compact(backend, {"typ": "ohm.cmd"}, {"id": "c-ok", "cmd": "ping", "exp": now + 600, "gw": gid})
    feeder = Feeder(gw, rate=100).start()
    hostile = _hostile(random.Random(11), gid, now)
    try:
        _publish(broker.port, f"ohm/{gid}/cmd", [good.encode(), *hostile, *[good.encode()] * 5])
        wait_for(
            lambda: len(consumer.store.query("SELECT 1 FROM results")) >= len(hostile) + 6,
            30,
            why=lambda: f"results {len(consumer.store.query('SELECT 1 FROM results'))} of {len(hostile) + 6}",
        )
        assert gw.state is State.ONLINE and gw.engine.state == "running"
    finally:
        sent = feeder.stop()
    rows = consumer.store.query("SELECT id, ok, body FROM results ORDER BY rowid")
    oks = [r for r in rows if r[1]]
    assert len(oks) == 1 and oks[0][0] == "c-ok"  # exactly the one good command ran, once
    replays = [json.loads(b)["reason"] for i, ok, b in rows if i == "c-ok" and not ok]
    assert replays == ["replayed"] * 5
    reasons = [json.loads(b).get("reason", "") for _, ok, b in rows if not ok]
    assert all(reasons), "every refusal says why"

    # Restart on the same data: the replay is still known (seen command ids are stored). Commands the
    # first process had not acknowledged come again from the broker's session: refused as replays too.
    gw.stop()
    gw.engine.wait_stopped(5)
    restarted = time.time()
    gw2 = gateway_factory(broker.port, mqtt__backend_key=str(key))
    wait_for(lambda: gw2.state is State.ONLINE, 30, why=lambda: str(gw2.services["uplink"].stats()))
    _publish(broker.port, f"ohm/{gid}/cmd", [good.encode()])

    def c_ok() -> list[tuple[float, dict]]:
        rows = consumer.store.query("SELECT received, body FROM results WHERE id = 'c-ok' ORDER BY rowid")
        return [(r[0], json.loads(r[1])) for r in rows]

    wait_for(lambda: any(t > restarted for t, _ in c_ok()), 30, why=lambda: str(c_ok()))
    answers = [body for _, body in c_ok()]
    assert [a["ok"] for a in answers].count(True) == 1 and answers[0]["ok"] is True
    assert all(a["reason"] == "replayed" for a in answers[1:]), answers

    # And the readings fed meanwhile all arrived, once, in order.
    tele = gw2.services["telemetry"]
    wait_for(lambda: gw2.services["outbox"].store.rows == 0 and tele.pending() == 0, 30, why=lambda: str(tele.stats()))
    last_seq = tele.state.next_seq - 1
    wait_for(lambda: len(consumer.store.sequences(gid)) >= last_seq, 30, why=lambda: str(consumer.ledger.gaps(gid)))
    assert consumer.store.sequences(gid) == list(range(1, last_seq + 1))
    counters = [r[0] for r in consumer.store.query("SELECT json_extract(data, '$.v.n') FROM readings ORDER BY seq")]
    assert counters == list(range(sent))
    report("hostile_mqtt", hostile=len(hostile), replays=6, accepted=1, readings=sent, lost=sent - len(counters))
