"""Endpoints over real HTTP: devices against the Modbus simulator, state, crypto, metrics, health."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from modbus_slave.server import Simulator
from server.api import attach as api
from server.config import load
from server.gateway import Gateway

from .conftest import Api, free_port, wait_for

pytestmark = pytest.mark.integration


def test_devices_crud_readings_and_modbus(api_gateway: Api, sim: Simulator) -> None:
    admin = api_gateway.client(api_gateway.admin)
    reader = api_gateway.client(api_gateway.read)
    try:
        dev = {"id": "inv", "profile": "sma", "host": "127.0.0.1", "port": sim.port, "interval": 1}
        got = admin.call("POST", "/api/devices", dev)
        assert got.status == 201, got.json
        assert got.json["device"]["id"] == "inv"
        assert admin.call("POST", "/api/devices", dev).status == 409
        assert [d["id"] for d in reader.call("GET", "/api/devices").json["devices"]] == ["inv"]

        snap = wait_for(lambda: reader.call("GET", "/api/devices/inv/readings").json["snapshot"])
        assert snap["device_id"] == "inv" and snap["online"] is True and snap["points"]
        one = reader.call("GET", "/api/devices/inv").json["device"]
        assert one["health"]["polls"] >= 1 and one["health"]["online"] is True

        got = reader.call("POST", "/api/modbus/read", {"device": "inv", "fc": 4, "address": 30775, "type": "int32"})
        image = sim.image()
        assert got.status == 200, got.json
        assert got.json["registers"] == [image[(4, 30775)], image[(4, 30776)]] and got.json["value"] == 4800

        got = admin.call("POST", "/api/modbus/write", {"device": "inv", "address": 40915, "value": 3000})
        assert got.status == 200, got.json
        assert got.json["registers"] == [0, 3000] and sim.written == {40915: 0, 40916: 3000}
        got = admin.call("POST", "/api/modbus/write", {"device": "inv", "address": 30775, "value": 1})
        assert got.status == 422 and "not writable" in got.json["detail"]

        got = admin.call("PATCH", "/api/devices/inv", {"name": "roof", "interval": 1.0})
        assert got.status == 200 and got.json["device"]["name"] == "roof"
        assert admin.call("PATCH", "/api/devices/inv", {"id": "other"}).status == 422
        assert admin.call("PATCH", "/api/devices/inv", {"enabled": False}).status == 200
        got = reader.call("POST", "/api/modbus/read", {"device": "inv", "address": 1})
        assert got.status == 409 and "disabled" in got.json["detail"]

        assert admin.call("DELETE", "/api/devices/inv").json == {"deleted": "inv"}
        assert reader.call("GET", "/api/devices/inv").status == 404
        assert api_gateway.gateway.services["devices"].store.load() == []  # persisted before the answer
    finally:
        admin.close()
        reader.close()


def test_device_offline_is_a_502_not_a_500(api_gateway: Api) -> None:
    admin = api_gateway.client(api_gateway.admin)
    try:
        dev = {"id": "gone", "profile": "sma", "host": "127.0.0.1", "port": free_port(), "interval": 5}
        assert admin.call("POST", "/api/devices", dev).status == 201
        got = admin.call("POST", "/api/modbus/read", {"device": "gone", "address": 1})
        assert got.status == 502 and got.json["error"] == "device_error"
    finally:
        admin.close()


def test_state_crypto_name_uptime(api_gateway: Api) -> None:
    c = api_gateway.client(api_gateway.read)
    try:
        wait_for(lambda: c.call("GET", "/api/state").json["state"] != "booting")
        state = c.call("GET", "/api/state").json
        assert state["engine"]["state"] == "running" and state["transitions"][0]["before"] == "booting"
        assert state["uplink"] is None and state["outbox"] is None  # not attached in this gateway
        signer = api_gateway.gateway.services["identity"]
        crypto = c.call("GET", "/api/crypto").json
        assert crypto["id"] == signer.device_id and crypto["public_pem"].startswith("-----BEGIN PUBLIC KEY-----")
        assert crypto["jwk"]["kid"] == signer.device_id and "d" not in crypto["jwk"]
        assert c.call("GET", "/api/name").json["name"] == f"Ohm-{signer.device_id.removeprefix('ohm-')[:8]}"
        assert c.call("GET", "/api/uptime").json["engine_s"] > 0
    finally:
        c.close()


def test_metrics_are_prometheus_text(api_gateway: Api, sim: Simulator) -> None:
    admin = api_gateway.client(api_gateway.admin)
    try:
        dev = {"id": "inv", "profile": "sma", "host": "127.0.0.1", "port": sim.port, "interval": 1}
        assert admin.call("POST", "/api/devices", dev).status == 201
        wait_for(lambda: api_gateway.gateway.services["devices"].health("inv")["polls"] >= 1)
        got = admin.call("GET", "/metrics")
        assert got.status == 200 and got.headers["content-type"].startswith("text/plain")
        text = got.body.decode()
        assert "# TYPE ohm_device_polls_total counter" in text
        polls = next(ln for ln in text.splitlines() if ln.startswith('ohm_device_polls_total{device="inv"}'))
        assert float(polls.split()[-1]) >= 1
        rss = next(ln for ln in text.splitlines() if ln.startswith("process_resident_memory_bytes"))
        assert float(rss.split()[-1]) > 1e6
        assert 'ohm_engine_lateness_seconds{quantile="0.99"}' in text
    finally:
        admin.close()


def test_first_boot_prints_admin_token_to_stderr_not_the_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    overrides = {"data_dir": tmp_path, "stats_interval": 0, "api.host": "127.0.0.1", "api.port": free_port()}
    gw = Gateway(load(None, env={}, overrides=overrides), services=[api])
    before = {t.name for t in threading.enumerate()}
    try:
        gw.start()
        gw.engine.start_thread()
        admin = __import__("json").loads((tmp_path / "api_tokens.json").read_text())["admin"]
        assert admin in capsys.readouterr().err
        assert admin not in caplog.text
    finally:
        gw.stop()
        assert gw.engine.wait_stopped(5)
    assert "ohm-api" not in {t.name for t in threading.enumerate()} - before  # the server thread ended


def test_health_is_503_once_the_engine_stops(api_gateway: Api) -> None:
    from server.api.app import create_app
    from server.api.server import ApiServer
    from server.api.tokens import load_or_create

    # A second server on the same gateway that outlives the engine, to see /health go to 503.
    tokens, _ = load_or_create(api_gateway.gateway.data_dir)
    srv = ApiServer(create_app(api_gateway.gateway, tokens), "127.0.0.1", 0).start()
    try:
        from .conftest import Client

        c = Client(srv.port)
        assert c.call("GET", "/health").status == 200
        api_gateway.gateway.stop()
        assert api_gateway.gateway.engine.wait_stopped(5)
        c.close()
        c = Client(srv.port)
        got = c.call("GET", "/health")
        assert got.status == 503 and got.json["engine"] == "stopped"
        c.close()
    finally:
        srv.stop()


def test_busy_port_leaves_the_gateway_running(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        overrides = {"data_dir": tmp_path, "stats_interval": 0, "api.host": "127.0.0.1"}
        overrides["api.port"] = busy.getsockname()[1]
        gw = Gateway(load(None, env={}, overrides=overrides), services=[api])
        try:
            gw.start()
            assert "api" not in gw.services
        finally:
            gw.stop()


def test_a_slow_device_gives_504_while_other_requests_go_on(api_gateway: Api, sim: Simulator) -> None:
    from modbus_slave.faults import Fault
    from server.api.app import create_app
    from server.api.routes import ApiContext
    from server.api.server import ApiServer
    from server.api.tokens import load_or_create

    from .conftest import Client

    gw = api_gateway.gateway
    tokens, _ = load_or_create(gw.data_dir)
    srv = ApiServer(create_app(gw, tokens, context=ApiContext(gw, io_timeout=1.5)), "127.0.0.1", 0).start()
    slow, other = Client(srv.port, tokens.admin), Client(srv.port, tokens.read)
    try:
        dev = {"id": "inv", "profile": "sma", "host": "127.0.0.1", "port": sim.port, "interval": 60}
        assert slow.call("POST", "/api/devices", dev).status == 201
        sim.set_fault(Fault("delay", 3.0))
        answers: list[int] = []
        reader = threading.Thread(
            target=lambda: answers.append(slow.call("POST", "/api/modbus/read", {"device": "inv", "address": 1}).status)
        )
        reader.start()
        wait_for(lambda: gw.services["devices"].engine.pool.stats()["busy"] >= 1)  # the read is on the wire
        states = [other.call("GET", "/api/state").status for _ in range(20)]
        still_waiting = not answers  # the state requests did not queue behind the slow read
        reader.join(5)
        assert answers == [504] and states == [200] * 20 and still_waiting
    finally:
        sim.set_fault(None)
        slow.close()
        other.close()
        srv.stop()
