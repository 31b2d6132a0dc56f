"""Provisioning Wi-Fi end to end: bumble central -> BLE service -> server API -> NetworkManager mock (dbusmock).

Both ways: Improv Wi-Fi (scan, Wi-Fi settings -> provisioned + dashboard URL) and the Ohm channel
(wifi_scan, wifi_connect sealed). Needs the server's system service and Wi-Fi client.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bluetooth import improv as iv
from tests.bluetooth.ble_support import Ble, start_ble
from tests.support import wait_for

pytestmark = pytest.mark.integration

pytest.importorskip("server.wifi", reason="the server's Wi-Fi client (server/wifi) is not in this tree")
privatebus = pytest.importorskip("tests.server.wifi.privatebus", reason="the private-bus helper is not in this tree")


@pytest.fixture
def nm(tmp_path: Path) -> Iterator[tuple[str, Any]]:
    why = privatebus.available()
    if why:
        pytest.skip(why)
    import dbus

    with (
        privatebus.private_bus(tmp_path) as address,
        privatebus.mock_service(address, "networkmanager", "org.freedesktop.NetworkManager") as conn,
    ):
        obj = conn.get_object("org.freedesktop.NetworkManager", "/org/freedesktop/NetworkManager")
        mock = dbus.Interface(obj, "org.freedesktop.DBus.Mock")
        device = str(mock.AddWiFiDevice("wlan0", "wlan0", 30))
        mock.AddAccessPoint(device, "ap1", "HomeNet", "00:11:22:33:44:55", 2, 2437, 54000, 80, 0x100)
        mock.AddAccessPoint(device, "ap2", "Cafe", "00:11:22:33:44:56", 2, 2437, 54000, 40, 0)
        yield address, mock


@pytest.fixture
def wifi_ble(tmp_path: Path, nm: tuple[str, Any]) -> Iterator[Ble]:
    from tests.server.wifi.system_gateway import system_gateway

    with system_gateway(tmp_path / "gw", **{"system.dbus_address": nm[0], "wifi.connect_timeout": 5}) as api:
        service, link, central = start_ble(api.gateway.data_dir, f"http://127.0.0.1:{api.port}")
        try:
            wait_for(lambda: service.window.state.open and service.window.mode == "server")
            yield Ble(service, link, central)
        finally:
            service.stop()


def test_improv_scan_and_wifi_settings_provision(wifi_ble: Ble) -> None:
    ble = wifi_ble
    central = ble.connect(185)
    networks = ble.run(central.improv(iv.Command.SCAN_NETWORKS))
    assert networks == ["HomeNet", "-60", "WPA2", "Cafe", "-80", "NO"]
    frame = iv.encode_strings(["HomeNet", "s3cret-passphrase"])
    url = ble.run(central.improv(iv.Command.WIFI_SETTINGS, frame), timeout=30)
    assert len(url) == 1 and url[0].startswith("http://") and url[0].endswith(f":{_port(ble)}/")
    assert central.states[-1] == iv.State.PROVISIONED and iv.State.PROVISIONING in central.states
    assert ble.service.improv.error == iv.Error.NONE
    # A wrong network: error "unable to connect", and the state goes back to authorized.
    ble.run(central.improv_write(iv.Command.WIFI_SETTINGS, iv.encode_strings(["Elsewhere", "password1"])))
    wait_for(lambda: ble.service.improv.error == iv.Error.UNABLE_TO_CONNECT, timeout=15)


def test_improv_device_name_is_the_gateway_name(wifi_ble: Ble) -> None:
    ble = wifi_ble
    central = ble.connect(185)
    assert ble.run(central.improv(iv.Command.DEVICE_NAME, iv.encode_strings(["Garage gateway"]))) == ["Garage gateway"]
    ble.run(central.handshake(ble.service.pop))
    assert ble.run(central.rest("GET", "/api/name"))["body"] == {"name": "Garage gateway"}
    assert ble.run(central.improv(iv.Command.DEVICE_NAME)) == ["Garage gateway"]


def test_ohm_channel_wifi_scan_and_connect(wifi_ble: Ble) -> None:
    ble = wifi_ble
    central = ble.connect(517)
    ble.run(central.handshake(ble.service.pop))
    scan = ble.run(central.call({"op": "wifi_scan"}))
    assert scan["status"] == 200 and [n["ssid"] for n in scan["body"]["networks"]] == ["HomeNet", "Cafe"]
    joined = ble.run(central.call({"op": "wifi_connect", "ssid": "HomeNet", "password": "s3cret-passphrase"}))
    assert joined["status"] == 200 and joined["body"]["ssid"] == "HomeNet"
    refused = ble.run(central.call({"op": "wifi_connect", "ssid": "HomeNet", "password": ""}))
    assert refused["status"] == 422  # the server's own answer, passed on
    # Claiming: the owner over the same session, and then the gateway counts as provisioned.
    owner = ble.run(central.rest("POST", "/api/owner/initialize", {"owner": "alice", "name": "Garage"}))
    assert owner["status"] == 200, owner
    token = ble.run(central.call({"op": "pair"}))["body"]["admin_token"]
    assert len(token) >= 32
    status = wait_for(lambda: _provisioned(ble, central), timeout=10)
    assert status["window_open"] is True and status["provisioned"] is True


def _provisioned(ble: Ble, central: Any) -> dict[str, Any] | None:
    body = ble.run(central.rest("GET", "/api/provisioning"))["body"]
    return body if body["provisioned"] else None


def _port(ble: Ble) -> int:
    from urllib.parse import urlsplit

    return urlsplit(ble.service.settings.server_url).port or 0
