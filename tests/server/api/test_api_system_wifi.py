"""Wi-Fi routes on a live gateway against NetworkManager (dbusmock) on a private bus; 503 without it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.server.wifi.privatebus import MockNM, mock_nm  # noqa: F401 - the fixture
from tests.server.wifi.system_gateway import system_gateway
from tests.support import wait_for

pytestmark = pytest.mark.integration


def test_wifi_routes_scan_connect_status_forget(mock_nm: MockNM, tmp_path: Path) -> None:  # noqa: F811
    mock_nm.add_ap("ap1", "HomeNet", 70)
    mock_nm.add_ap("ap2", "Neighbour", 20)
    with system_gateway(tmp_path / "gw", **{"system.dbus_address": mock_nm.address}) as gw:
        admin, reader = gw.client(gw.admin), gw.client(gw.read)
        prov = gw.gateway.services["provisioning"]
        assert reader.call("GET", "/api/wifi").json["device_state"] == "disconnected"
        assert reader.call("POST", "/api/wifi/scan").status == 403
        scan = admin.call("POST", "/api/wifi/scan")
        assert scan.status == 200 and [n["ssid"] for n in scan.json["networks"]] == ["HomeNet", "Neighbour"]

        for body, status, why in [
            ({"ssid": "HomeNet", "password": "short"}, 422, "password: must be 8-63"),
            ({"ssid": ""}, 422, "ssid"),
            ({"ssid": "x" * 33}, 422, "ssid: at most 32 bytes"),
            ({"ssid": "HomeNet", "pass": "x"}, 422, "unknown field 'pass'"),
            ({"ssid": "Faraway", "password": "longenough"}, 404, "no network 'Faraway' in range"),
            ({"ssid": "HomeNet"}, 422, "a password is needed"),
        ]:
            got = admin.call("POST", "/api/wifi/connect", body)
            assert got.status == status and why in got.json["detail"], (body, got.json)

        assert not prov.wifi_known
        ok = admin.call("POST", "/api/wifi/connect", {"ssid": "HomeNet", "password": "correct-horse"})
        assert ok.status == 200 and ok.json["ssid"] == "HomeNet" and ok.json["device_state"] == "activated"
        assert b"correct-horse" not in ok.body
        assert reader.call("GET", "/api/wifi").json["ssid"] == "HomeNet"
        wait_for(lambda: prov.wifi_known)  # the provisioned check sees the saved connection
        assert "no network" not in reader.call("GET", "/api/provisioning").json["reason"]

        assert admin.call("DELETE", "/api/wifi/Nope").status == 404
        gone = admin.call("DELETE", "/api/wifi/HomeNet")
        assert gone.status == 200 and gone.json == {"forgotten": "HomeNet", "connections": 1}
        assert reader.call("GET", "/api/wifi").json["ssid"] is None
        wait_for(lambda: prov.wifi_known is False)
        actions = reader.call("GET", "/api/actions").json["actions"]
        assert any(a["what"] == "POST /api/wifi/connect" and a["result"] == "ok" for a in actions)
        assert "correct-horse" not in str(actions)
        admin.close()
        reader.close()


def test_without_networkmanager_the_wifi_routes_answer_503(tmp_path: Path) -> None:
    with system_gateway(tmp_path / "gw", **{"system.dbus_address": f"unix:path={tmp_path}/no-bus"}) as gw:
        admin = gw.client(gw.admin)
        for method, path, body in [
            ("GET", "/api/wifi", None),
            ("POST", "/api/wifi/scan", None),
            ("POST", "/api/wifi/connect", {"ssid": "HomeNet", "password": "correct-horse"}),
            ("DELETE", "/api/wifi/HomeNet", None),
        ]:
            got = admin.call(method, path, body)
            assert got.status == 503 and "no system D-Bus" in got.json["detail"], (path, got.json)
        admin.close()
