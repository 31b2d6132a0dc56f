"""Scan endpoints over real HTTP against the Modbus simulator on 127.0.0.1: start, progress, results, cancel."""

from __future__ import annotations

import pytest

from modbus_slave.server import Simulator

from .conftest import Api, free_port, wait_for

pytestmark = pytest.mark.integration


def test_scan_finds_the_simulator(api_gateway: Api, sim: Simulator) -> None:
    admin = api_gateway.client(api_gateway.admin)
    reader = api_gateway.client(api_gateway.read)
    try:
        body = {"hosts": "127.0.0.1", "ports": [sim.port], "units": [3], "timeout": 0.5}
        assert reader.call("POST", "/api/scan", body).status == 403
        got = admin.call("POST", "/api/scan", body)
        assert got.status == 202, got.json
        scan_id = got.json["scan_id"]
        assert got.json["total"] == 1

        status = wait_for(lambda: (r := reader.call("GET", f"/api/scan/{scan_id}").json)["finished"] and r, 10)
        assert status["done"] == status["total"] == 1 and status["cancelled"] is False
        assert [(f["port"], f["unit_id"], f["profile"]) for f in status["found"]] == [(sim.port, 3, "sma")]
    finally:
        admin.close()
        reader.close()


def test_scan_cancel_skips_the_rest(api_gateway: Api) -> None:
    admin = api_gateway.client(api_gateway.admin)
    try:
        # Closed loopback ports answer at once with a refusal; many of them keep the scan busy long enough to cancel.
        ports = [free_port() for _ in range(40)]
        got = admin.call("POST", "/api/scan", {"hosts": "127.0.0.1", "ports": ports, "units": [1], "rate": 5})
        assert got.status == 202, got.json
        scan_id = got.json["scan_id"]
        got = admin.call("DELETE", f"/api/scan/{scan_id}")
        assert got.status == 200 and got.json["cancelled"] is True
        status = wait_for(lambda: (r := admin.call("GET", f"/api/scan/{scan_id}").json)["finished"] and r, 10)
        assert status["done"] < status["total"] == 40
        assert admin.call("DELETE", "/api/scan/scan-99").status == 404
    finally:
        admin.close()


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({}, "give either hosts"),
        ({"hosts": "127.0.0.1", "serial": ["/dev/ttyUSB0"]}, "give either hosts"),
        ({"hosts": "127.0.0.1", "ports": [0]}, "ports: must be a list"),
        ({"hosts": "127.0.0.1", "timeout": 9}, "timeout: must be a number"),
        ({"hosts": "300.1.1.1"}, "bad host range"),
        ({"hosts": [1, 2]}, "hosts:"),
        ({"hosts": "127.0.0.1", "rate": "fast"}, "rate: must be a JSON number"),
        ({"hosts": "127.0.0.1", "what": 1}, "unknown argument 'what'"),
    ],
)
def test_bad_scan_bodies_are_422(api_gateway: Api, body: dict, detail: str) -> None:  # type: ignore[type-arg]
    admin = api_gateway.client(api_gateway.admin)
    try:
        got = admin.call("POST", "/api/scan", body)
        assert got.status == 422 and detail in got.json["detail"], got.json
        assert admin.call("GET", "/api/scan/scan-99").status == 404
    finally:
        admin.close()
