"""Fixtures: a real gateway API on loopback, and the BLE service on a bumble virtual link with a central."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from server.api import attach as api
from server.api.tokens import load_or_create
from server.audit import attach as audit
from server.crypto.service import attach as identity
from tests.bluetooth.ble_support import Ble, Server, start_ble
from tests.support import api_settings, started_gateway, wait_for


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    overrides = api_settings(tmp_path / "gw")
    services = [audit, identity, api]
    try:  # the provisioning window and Wi-Fi routes (system service); without it the BLE service keeps a local window
        from server.api.system_service import attach as system

        services.insert(2, system)
        overrides["system.dbus_address"] = "unix:path=/nonexistent/ohm-test-bus"  # never the machine's own bus
    except ImportError:
        pass
    with started_gateway(overrides, services) as gw:
        tokens, _ = load_or_create(gw.data_dir)
        yield Server(gw, overrides["api.port"], tokens.admin)


@pytest.fixture
def ble(server: Server) -> Iterator[Ble]:
    service, link, central = start_ble(server.gateway.data_dir, server.url)
    try:
        wait_for(lambda: service.window.state.open, why=lambda: f"window {service.window.state}")
        yield Ble(service, link, central)
    finally:
        service.stop()
