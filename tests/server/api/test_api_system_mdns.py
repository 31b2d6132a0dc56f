"""mDNS: the API advertises _ohm._tcp on loopback only; a second Zeroconf on 127.0.0.1 finds it and sees it go."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

import server
from server.api.mdns import SERVICE_TYPE, addresses_for, instance_name
from tests.server.wifi.system_gateway import system_gateway
from tests.support import wait_for

pytestmark = pytest.mark.integration


def test_instance_names_and_loopback_binding() -> None:
    assert instance_name("Roof.top") == "Roof-top" and instance_name("") == "Ohm"
    assert len(instance_name("é" * 40).encode()) <= 63
    assert addresses_for("127.0.0.1") == (["127.0.0.1"], ["127.0.0.1"])  # a specific API address: only that


def test_gateway_is_found_over_mdns_and_says_goodbye(tmp_path: Path) -> None:
    from zeroconf import IPVersion, ServiceBrowser, ServiceStateChange, Zeroconf

    seen: dict[str, Any] = {}
    removed: set[str] = set()
    lock = threading.Lock()

    def changed(zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange) -> None:
        with lock:
            if state_change is ServiceStateChange.Removed:
                removed.add(name)
            else:
                seen[name] = None

    browser_zc = Zeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)  # loopback only, never the LAN
    browser = ServiceBrowser(browser_zc, SERVICE_TYPE, handlers=[changed])
    try:
        with system_gateway(tmp_path / "gw", **{"mdns.enabled": True, "name": "Garage"}) as gw:
            gateway_id = gw.gateway.services["identity"].device_id

            def ours() -> str | None:
                with lock:
                    names = list(seen)
                for name in names:
                    info = browser_zc.get_service_info(SERVICE_TYPE, name, timeout=1500)
                    if info is not None and info.properties.get(b"id") == gateway_id.encode():
                        seen[name] = info
                        return name
                return None

            name = wait_for(ours, 15)
            info = seen[name]
            assert name.startswith("Garage")
            assert info.port == gw.port and info.parsed_addresses() == ["127.0.0.1"]
            assert info.properties == {
                b"id": gateway_id.encode(),
                b"version": server.__version__.encode(),
                b"path": b"/api",
            }
        wait_for(lambda: name in removed, 10)  # goodbye packets on shutdown
    finally:
        browser.cancel()
        browser_zc.close()


def test_mdns_off_by_setting(tmp_path: Path) -> None:
    with system_gateway(tmp_path / "gw", **{"mdns.enabled": False}) as gw:
        assert "mdns" not in gw.gateway.services
