"""Control actions, settings, owner, provisioning, Wi-Fi and power endpoints."""

from __future__ import annotations

import pytest

from .conftest import Gateway

POINT = "control.power_limit_w"


@pytest.mark.endpoint("POST /api/actions", "GET /api/actions/{action_id}", "DELETE /api/actions/{action_id}")
def test_timed_action_start_read_cancel(gw: Gateway, device: str) -> None:
    points = gw.call("GET", "/api/control/points", token="read").json
    assert any(p.get("point") == POINT or p.get("name") == POINT for p in _flatten(points)), points
    got = gw.call("POST", "/api/actions", {"device": device, "point": POINT, "value": 2500, "duration_s": 300})
    assert got.status in (200, 201, 202), got.body
    action = got.json.get("action", got.json)
    one = gw.call("GET", f"/api/actions/{action['id']}", token="read")
    assert one.status == 200
    cancel = gw.call("DELETE", f"/api/actions/{action['id']}")
    assert cancel.status == 200, cancel.body
    assert gw.call("GET", "/api/actions/nope", token="read").status == 404
    bad = gw.call("POST", "/api/actions", {"device": device, "point": POINT, "value": -5, "duration_s": 10})
    assert bad.status == 422
    assert gw.call("POST", "/api/actions", {"device": device}, token="read").status == 403


def _flatten(obj: object) -> list[dict]:
    if isinstance(obj, dict):
        return [obj, *[x for v in obj.values() for x in _flatten(v)]]
    if isinstance(obj, list):
        return [x for v in obj for x in _flatten(v)]
    return []


@pytest.mark.endpoint("PATCH /api/settings")
def test_settings_change_validate_and_restore(gw: Gateway) -> None:
    name = gw.call("GET", "/api/name", token="read").json["name"]
    got = gw.call("PATCH", "/api/settings", {"name": "rest-suite"})
    assert got.status == 200 and "name" in got.json["changed"], got.body
    assert gw.call("GET", "/api/name", token="read").json["name"] == "rest-suite"
    bad = gw.call("PATCH", "/api/settings", {"telemetry.batch_interval": "often"})
    assert bad.status == 422 and "telemetry.batch_interval" in bad.json["detail"]
    assert gw.call("PATCH", "/api/settings", {"no.such.key": 1}).status == 422
    assert gw.call("PATCH", "/api/settings", {"name": "x"}, token="read").status == 403
    gw.call("PATCH", "/api/settings", {"name": None if gw.owned else name})


@pytest.mark.endpoint("POST /api/owner/initialize")
def test_owner_initialize_once(gw: Gateway) -> None:
    before = gw.call("GET", "/api/owner", token="read").json
    if gw.owned and not before.get("owner"):
        got = gw.call("POST", "/api/owner/initialize", {"owner": "rest-suite@example.org"})
        assert got.status in (200, 201), got.body
    again = gw.call("POST", "/api/owner/initialize", {"owner": "someone-else"})
    assert again.status == 409  # set once; replacing needs force
    assert gw.call("POST", "/api/owner/initialize", {"owner": ""}).status in (400, 422)
    assert gw.call("POST", "/api/owner/initialize", {"owner": "x"}, token="read").status == 403


@pytest.mark.endpoint("POST /api/provisioning/window", "DELETE /api/provisioning/window")
def test_provisioning_window_open_and_close(gw: Gateway) -> None:
    was_open = bool(gw.call("GET", "/api/provisioning", token="read").json.get("window_open"))
    got = gw.call("POST", "/api/provisioning/window", {"seconds": 30})
    assert got.status == 200, got.body
    assert gw.call("POST", "/api/provisioning/window", {"seconds": 5000}).status in (400, 422)
    closed = gw.call("DELETE", "/api/provisioning/window")
    assert closed.status == 200
    if was_open:
        gw.call("POST", "/api/provisioning/window", {})
    assert gw.call("DELETE", "/api/provisioning/window", token="read").status == 403


@pytest.mark.endpoint("GET /api/wifi", "POST /api/wifi/scan", "POST /api/wifi/connect", "DELETE /api/wifi/{ssid}")
def test_wifi_answers_clearly(gw: Gateway) -> None:
    # Without NetworkManager (the suite's own gateway) each answers a clear 503, never a 500.
    status = gw.call("GET", "/api/wifi", token="read")
    assert status.status in (200, 503) and status.json, status.body
    scan = gw.call("POST", "/api/wifi/scan")
    assert scan.status in (200, 503) and (scan.status == 200 or scan.json["detail"]), scan.body
    bad = gw.call("POST", "/api/wifi/connect", {"ssid": "x" * 40})
    assert bad.status in (400, 422)
    assert gw.call("POST", "/api/wifi/connect", {"ssid": "net", "password": "short"}).status == 422
    if gw.owned:
        conn = gw.call("POST", "/api/wifi/connect", {"ssid": "rest-suite-net", "password": "password123"})
        assert conn.status in (502, 503, 504) and conn.json["detail"], conn.body
        forget = gw.call("DELETE", "/api/wifi/rest-suite-net")
        assert forget.status in (200, 404, 503) and forget.json, forget.body
    assert gw.call("POST", "/api/wifi/scan", token="read").status == 403


@pytest.mark.endpoint("POST /api/system/reboot")
def test_reboot_needs_admin_and_says_why_it_cannot(gw: Gateway) -> None:
    assert gw.call("POST", "/api/system/reboot", token=None).status == 401
    assert gw.call("POST", "/api/system/reboot", token="read").status == 403
    if gw.owned:  # no logind here: refused clearly, and the machine is certainly not rebooted
        got = gw.call("POST", "/api/system/reboot")
        assert got.status in (409, 503) and got.json["detail"], got.body


@pytest.mark.endpoint("POST /api/system/restart")
def test_restart_exits_75_and_comes_back_with_its_data(gw: Gateway, device: str) -> None:
    assert gw.call("POST", "/api/system/restart", token="read").status == 403
    if not gw.owned:
        pytest.skip("never restarts a gateway the suite did not start")
    assert gw.call("POST", "/api/system/restart").status == 202
    assert gw.proc is not None and gw.proc.wait(15) == 75
    gw.start()  # what a supervisor (systemd, the container runtime) does on exit code 75
    assert gw.call("GET", f"/api/devices/{device}", token="read").status == 200
