"""Devices, readings, Modbus reads and writes, discovery scans and notifications against a real device."""

from __future__ import annotations

import pytest

from .conftest import Gateway


@pytest.mark.endpoint(
    "POST /api/devices",
    "GET /api/devices/{device_id}",
    "PATCH /api/devices/{device_id}",
    "GET /api/devices/{device_id}/readings",
)
def test_device_lifecycle_and_readings(gw: Gateway, device: str) -> None:
    one = gw.call("GET", f"/api/devices/{device}", token="read")
    assert one.status == 200 and one.json["device"]["id"] == device
    snap = gw.wait(lambda: gw.call("GET", f"/api/devices/{device}/readings", token="read").json["snapshot"])
    assert snap["device_id"] == device and snap["online"] is True and snap["points"]
    got = gw.call("PATCH", f"/api/devices/{device}", {"name": "rest test"})
    assert got.status == 200 and got.json["device"]["name"] == "rest test"
    assert gw.call("PATCH", f"/api/devices/{device}", {"interval": "fast"}).status in (400, 422)
    assert gw.call("PATCH", f"/api/devices/{device}", {"name": "x"}, token="read").status == 403
    dup = gw.call("POST", "/api/devices", {"id": device, "profile": "sma", "host": "127.0.0.1"})
    assert dup.status == 409
    bad = gw.call("POST", "/api/devices", {"id": "x", "profile": "no-such-profile", "host": "127.0.0.1"})
    assert bad.status in (400, 422) and "profile" in bad.json["detail"]
    assert gw.call("POST", "/api/devices", raw=b"{not json").status == 400
    assert gw.call("GET", "/api/devices/nope", token="read").status == 404


@pytest.mark.endpoint("DELETE /api/devices/{device_id}")
def test_device_delete(gw: Gateway) -> None:
    body = {"id": "resttest-del", "profile": "sma", "host": gw.modbus[0], "port": gw.modbus[1], "interval": 60}
    assert gw.call("POST", "/api/devices", body).status == 201
    assert gw.call("DELETE", "/api/devices/resttest-del", token="read").status == 403
    assert gw.call("DELETE", "/api/devices/resttest-del").json == {"deleted": "resttest-del"}
    assert gw.call("GET", "/api/devices/resttest-del", token="read").status == 404
    assert gw.call("DELETE", "/api/devices/resttest-del").status == 404


@pytest.mark.endpoint("POST /api/modbus/read", "POST /api/modbus/write")
def test_modbus_read_and_write(gw: Gateway, device: str) -> None:
    got = gw.call("POST", "/api/modbus/read", {"device": device, "fc": 4, "address": 30775, "type": "int32"}, "read")
    assert got.status == 200, got.body
    assert len(got.json["registers"]) == 2 and isinstance(got.json["value"], int)
    assert gw.call("POST", "/api/modbus/read", {"device": device, "address": 70000}, "read").status == 422
    got = gw.call("POST", "/api/modbus/write", {"device": device, "address": 40915, "value": 4000})
    assert got.status == 200, got.body
    assert got.json["registers"] == [0, 4000]
    refused = gw.call("POST", "/api/modbus/write", {"device": device, "address": 30775, "value": 1})
    assert refused.status == 422 and "not writable" in refused.json["detail"]
    assert gw.call("POST", "/api/modbus/write", {"device": device, "address": 40915, "value": 1}, "read").status == 403
    gw.call("POST", "/api/modbus/write", {"device": device, "address": 40915, "value": 100000})  # back to no limit


@pytest.mark.endpoint("POST /api/scan", "GET /api/scan/{scan_id}", "DELETE /api/scan/{scan_id}")
def test_scan_start_progress_cancel(gw: Gateway) -> None:
    host, port = gw.modbus
    got = gw.call("POST", "/api/scan", {"hosts": host, "ports": [port], "units": [3], "timeout": 1})
    assert got.status == 202, got.body
    scan_id = got.json["scan_id"]
    done = gw.wait(lambda: (s := gw.call("GET", f"/api/scan/{scan_id}", token="read").json)["done"] >= s["total"] and s)
    assert any(f["profile"] == "sma" for f in done["found"]), done
    second = gw.call("POST", "/api/scan", {"hosts": "127.0.0.1-40", "ports": [port], "units": [1, 3], "rate": 5})
    assert second.status == 202
    cancel = gw.call("DELETE", f"/api/scan/{second.json['scan_id']}")
    assert cancel.status == 200 and cancel.json.get("cancelled") is True
    assert gw.call("GET", "/api/scan/unknown", token="read").status == 404
    assert gw.call("POST", "/api/scan", {"hosts": "8.8.8.8"}, token="read").status == 403
    assert gw.call("POST", "/api/scan", {"ports": "all"}).status in (400, 422)


@pytest.mark.endpoint("DELETE /api/notifications/{note_id}")
def test_notification_dismiss(gw: Gateway, device: str) -> None:
    notes = gw.call("GET", "/api/notifications", token="read").json
    items = notes.get("notifications") or notes.get("items") or []
    if items:
        note = items[0]["id"]
        assert gw.call("DELETE", f"/api/notifications/{note}").json == {"dismissed": note}
    assert gw.call("DELETE", "/api/notifications/999999999").status == 404
    assert gw.call("DELETE", "/api/notifications/abc").status == 404
    assert gw.call("DELETE", "/api/notifications/1", token="read").status == 403
