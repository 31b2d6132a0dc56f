"""Control over real HTTP (REST, admin) and over signed MQTT commands (backend) against the simulator."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modbus_slave.faults import Fault
from modbus_slave.server import Simulator
from server.api import attach as api
from server.api.tokens import load_or_create
from server.audit import attach as audit
from server.config import load
from server.consumer import Consumer, ConsumerStore
from server.consumer.consumer import ConsumerSettings
from server.control import attach as control
from server.crypto.service import attach as identity
from server.crypto.software import SoftwareSigner
from server.devices import attach as devices
from server.gateway import Gateway
from server.outbox.service import attach as outbox
from server.statemachine import State
from server.telemetry.service import attach as telemetry
from server.uplink.broker import free_port
from server.uplink.service import attach as uplink
from tests.server.api.conftest import Client
from tests.server.devices.test_device_commands_e2e import Backend
from tests.support import wait_for

from .conftest import FAST_RETRY, add_device, limit_w

pytestmark = pytest.mark.integration
POINT = "control.power_limit_w"


@pytest.fixture
def http(tmp_path: Path, sim: Simulator) -> Iterator[tuple[Client, Client, Gateway]]:
    """A gateway with the API on loopback; (admin client, read client, gateway)."""
    port = free_port()
    overrides = {"data_dir": tmp_path / "gw", "stats_interval": 0, "api.host": "127.0.0.1", "api.port": port}
    gw = Gateway(load(None, env={}, overrides=overrides), services=[audit, devices, control, api])
    clients: list[Client] = []
    try:
        gw.start()
        gw.services["control"].retry_gap = FAST_RETRY
        gw.engine.start_thread()
        add_device(gw, sim)
        tokens, _ = load_or_create(gw.data_dir)
        clients = [Client(port, tokens.admin), Client(port, tokens.read)]
        yield clients[0], clients[1], gw
    finally:
        for c in clients:
            c.close()
        gw.stop()
        gw.engine.wait_stopped(5)


def test_rest_actions_conflicts_points_and_cancel(http: tuple[Client, Client, Gateway], sim: Simulator) -> None:
    admin, reader, gw = http
    points = reader.call("GET", "/api/control/points").json["points"]
    assert points == [
        {
            "device": "inv",
            "point": POINT,
            "unit": "W",
            "min": 0.0,
            "max": 100000.0,
            "step": 1.0,
            "safe_default": 100000.0,
            "writable": True,
            "held_by": None,
        }
    ]
    got = admin.call("POST", "/api/actions", {"device": "inv", "point": POINT, "value": 3000})
    assert got.status == 201 and got.json["action"]["state"] == "done", got.json
    assert limit_w(sim) == 3000

    got = admin.call("POST", "/api/actions", {"device": "inv", "point": POINT, "value": 2000, "duration_s": 600})
    assert got.status == 201 and got.json["action"]["state"] == "active"
    timed = got.json["action"]
    assert timed["revert_to"] == 3000 and timed["who"] == "admin@127.0.0.1"
    held = reader.call("GET", "/api/control/points").json["points"][0]["held_by"]
    assert held["who"] == "admin@127.0.0.1" and held["priority"] == "local" and held["until"] == timed["revert_at"]

    # The backend (MQTT) cannot take a point the owner holds: the same refusal the API gives a 409 for.
    from server.control.model import Conflict

    with pytest.raises(Conflict, match=r"held by admin@127\.0\.0\.1 \(local priority"):
        gw.services["control"].submit({"device": "inv", "point": POINT, "value": 1}, "backend", "backend")
    # A second admin client (another address would be another owner; same owner replaces its own hold).
    again = admin.call("POST", "/api/actions", {"device": "inv", "point": POINT, "value": 2500, "duration_s": 60})
    assert again.status == 201 and again.json["action"]["revert_to"] == 3000  # inherited from the first hold

    bad = admin.call("POST", "/api/actions", {"device": "inv", "point": POINT, "value": 0.5})
    assert bad.status == 422 and "not a multiple of the step 1" in bad.json["detail"]
    assert admin.call("POST", "/api/actions", {"device": "inv", "point": "pv.power_w", "value": 1}).status == 422
    assert admin.call("POST", "/api/actions", {"device": "inv", "point": POINT}).status == 422
    assert reader.call("POST", "/api/actions", {"device": "inv", "point": POINT, "value": 1}).status == 403

    sched = admin.call("POST", "/api/actions", {"device": "inv", "point": POINT, "value": 10, "repeat": "0 13 * * *"})
    assert sched.status == 201 and sched.json["action"]["state"] == "scheduled"
    listing = reader.call("GET", "/api/actions?limit=50").json
    assert [a["id"] for a in listing["active"]] == [again.json["action"]["id"]]
    assert [a["id"] for a in listing["scheduled"]] == [sched.json["action"]["id"]]
    assert any(a["what"].startswith("set control.power_limit_w=2000 on inv for 600 s") for a in listing["actions"])

    gone = admin.call("DELETE", f"/api/actions/{again.json['action']['id']}")
    assert gone.status == 200
    wait_for(lambda: limit_w(sim) == 3000)  # reverted to the value from before both holds
    one = reader.call("GET", f"/api/actions/{again.json['action']['id']}").json["action"]
    wait_for(lambda: reader.call("GET", f"/api/actions/{one['id']}").json["action"]["state"] == "cancelled")
    assert admin.call("DELETE", f"/api/actions/{sched.json['action']['id']}").status == 200
    assert admin.call("DELETE", f"/api/actions/{sched.json['action']['id']}").status == 409  # finished already
    assert admin.call("DELETE", "/api/actions/nope").status == 404
    assert reader.call("GET", "/api/actions").json["scheduled"] == []


def test_rest_conflict_is_a_409_naming_the_holder(http: tuple[Client, Client, Gateway], sim: Simulator) -> None:
    admin, _reader, gw = http
    svc = gw.services["control"]
    # Home Assistant is local priority too, but another owner: the admin gets a 409 that names it.
    ha = svc.submit({"device": "inv", "point": POINT, "value": 4000, "duration_s": 60}, "homeassistant", "local")
    wait_for(lambda: svc.get(ha.id).state == "active")
    got = admin.call("POST", "/api/actions", {"device": "inv", "point": POINT, "value": 1})
    assert got.status == 409 and got.json["error"] == "conflict"
    assert got.json["detail"].startswith("held by homeassistant (local priority, action ")


@pytest.fixture
def mqtt_backend(mosquitto: Any, tmp_path: Path, sim: Simulator) -> Iterator[tuple[Backend, Gateway]]:
    """A gateway with uplink and control, and a backend that signs commands."""
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
    services = [audit, devices, identity, outbox, telemetry, uplink, control]
    gw = Gateway(load(None, env={}, overrides=overrides), services=services)
    bk: Backend | None = None
    try:
        gw.start()
        gw.services["control"].retry_gap = FAST_RETRY
        gw.engine.start_thread()
        add_device(gw, sim)
        wait_for(consumer.connected.is_set, 5)
        wait_for(lambda: gw.state is State.ONLINE, 10)
        bk = Backend(signer, gw.services["identity"].device_id, mosquitto.port, consumer)
        yield bk, gw
    finally:
        if bk is not None:
            bk.close()
        gw.stop()
        gw.engine.wait_stopped(5)
        consumer.stop()
        store.close()


def test_signed_backend_commands_set_renew_list_cancel(mqtt_backend: tuple[Backend, Gateway], sim: Simulator) -> None:
    bk, _gw = mqtt_backend
    sim.set_fault(Fault("exception", 4))
    try:
        failed = bk.ask("control.set", {"device": "inv", "point": POINT, "value": 700})
        assert failed["ok"] is False and "device refused" in failed["reason"]
    finally:
        sim.set_fault(None)
    got = bk.ask("control.set", {"device": "inv", "point": POINT, "value": 6000, "lease_s": 30})
    assert got["ok"] is True, got
    action = got["result"]["action"]
    assert (action["state"], action["who"], action["source"]) == ("active", "backend", "backend")
    assert limit_w(sim) == 6000
    renewed = bk.ask("control.renew", {})
    assert renewed["ok"] and renewed["result"]["renewed"] == [action["id"]]
    listed = bk.ask("control.list")["result"]
    assert [a["id"] for a in listed["active"]] == [action["id"]]
    refused = bk.ask("control.set", {"device": "inv", "point": POINT, "value": 100001})
    assert refused["ok"] is False and "outside" in refused["reason"]
    # A plain new value from the same owner keeps the hold's lease and its revert.
    again = bk.ask("control.set", {"device": "inv", "point": POINT, "value": 6500})["result"]["action"]
    assert again["lease_until"] == renewed["result"]["lease_until"][action["id"]] and again["revert_to"] == 100000
    action = again
    cancelled = bk.ask("control.cancel", {"id": action["id"]})
    assert cancelled["ok"] is True
    wait_for(lambda: limit_w(sim) == 100000)
    assert bk.ask("control.cancel", {"id": "nope"})["reason"] == "unknown action 'nope'"
