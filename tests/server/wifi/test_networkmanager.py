"""The NetworkManager client: pure checks, then real D-Bus calls against the dbusmock template on a private bus."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from server.wifi import NetworkManager, WifiNotFound, WifiRefused, WifiUnavailable, check_password, security_of

from .privatebus import MockNM


@pytest.mark.parametrize(
    ("flags", "wpa", "rsn", "expected"),
    [
        (0, 0, 0, "open"),
        (1, 0, 0, "wep"),
        (1, 0x100, 0, "wpa"),
        (1, 0, 0x100 | 0x8, "wpa2"),
        (1, 0, 0x400, "wpa3"),
        (1, 0, 0x200, "enterprise"),
    ],
)
def test_security_names(flags: int, wpa: int, rsn: int, expected: str) -> None:
    assert security_of(flags, wpa, rsn) == expected


def test_password_rules() -> None:
    assert check_password(None) == "" and check_password("12345678") == "12345678"
    assert check_password("a" * 64) == "a" * 64  # 64 hex digits: a raw PSK
    for bad in ("short", "x" * 64, "é" * 10, 12345678):
        with pytest.raises(WifiRefused) as err:
            check_password(bad)
        assert str(bad) not in str(err.value)  # the message never echoes the password


def test_no_bus_is_unavailable_not_a_crash(tmp_path: Path) -> None:
    nm = NetworkManager(f"unix:path={tmp_path}/nothing-here")
    with pytest.raises(WifiUnavailable, match="no system D-Bus"):
        nm.status()


@pytest.mark.integration
def test_bus_without_networkmanager_is_unavailable(tmp_path: Path) -> None:
    from .privatebus import available, private_bus

    if available():
        pytest.skip(available())
    with private_bus(tmp_path) as address, pytest.raises(WifiUnavailable, match="NetworkManager is not running"):
        NetworkManager(address).scan()


@pytest.mark.integration
def test_scan_connect_status_forget(mock_nm: MockNM, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    mock_nm.add_ap("ap1", "HomeNet", 80)
    mock_nm.add_ap("ap2", "Cafe", 40, security=0)
    mock_nm.add_ap("ap3", "HomeNet", 30)  # a weaker access point of the same network
    nm = NetworkManager(mock_nm.address, connect_timeout=5)

    before = nm.status()
    assert before["device"] == "wlan0" and before["device_state"] == "disconnected" and before["ssid"] is None
    found = [ap.as_dict() for ap in nm.scan()]
    assert found == [
        {"ssid": "HomeNet", "signal": 80, "security": "wpa2", "frequency": 2437},
        {"ssid": "Cafe", "signal": 40, "security": "open", "frequency": 2437},
    ]
    assert nm.known_ssids() == []

    with pytest.raises(WifiNotFound, match="no network 'Elsewhere' in range"):
        nm.connect("Elsewhere", "password1")
    with pytest.raises(WifiRefused, match="a password is needed"):
        nm.connect("HomeNet", "")
    with pytest.raises(WifiRefused, match="open network"):
        nm.connect("Cafe", "password1")

    after = nm.connect("HomeNet", "s3cret-passphrase")
    assert after["device_state"] == "activated" and after["ssid"] == "HomeNet" and after["signal"] == 80
    assert nm.status()["ssid"] == "HomeNet"
    assert nm.known_ssids() == ["HomeNet"]
    nm.connect("HomeNet", "another-passphrase")  # a new password replaces the saved connection
    assert nm.known_ssids() == ["HomeNet"]
    assert "s3cret-passphrase" not in caplog.text and "another-passphrase" not in caplog.text

    assert nm.forget("HomeNet") == 1
    assert nm.known_ssids() == [] and nm.status()["ssid"] is None
    with pytest.raises(WifiNotFound):
        nm.forget("HomeNet")
