"""Fixtures: a real gateway API on loopback, and the BLE service on a bumble virtual link with a central."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from server.api import attach as api
from server.api.tokens import load_or_create
from server.audit import attach as audit
from server.config import FIELDS_BY_KEY, load
from server.crypto.service import attach as identity
from server.gateway import Gateway
from server.uplink.broker import free_port
from tests.bluetooth.ble_support import Ble, Server, start_ble
from tests.support import wait_for


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    port = free_port()
    overrides = {
        "data_dir": tmp_path / "gw",
        "stats_interval": 0,
        "identity.backend": "software",
        "api.host": "127.0.0.1",
        "api.port": port,
        "api.ws_port": 0,
    }
    if "mdns.enabled" in FIELDS_BY_KEY:
        overrides["mdns.enabled"] = False  # nothing leaves loopback in tests
    services = [audit, identity, api]
    try:  # the provisioning window and Wi-Fi routes (system service); without it the BLE service keeps a local window
        from server.api.system_service import attach as system

        services.insert(2, system)
        overrides["system.dbus_address"] = "unix:path=/nonexistent/ohm-test-bus"  # never the machine's own bus
    except ImportError:
        pass
    gw = Gateway(load(None, env={}, overrides=overrides), services=services)
    try:
        gw.start()
        gw.engine.start_thread()
        wait_for(lambda: gw.engine.state == "running")
        tokens, _ = load_or_create(gw.data_dir)
        yield Server(gw, port, tokens.admin)
    finally:
        gw.stop()
        gw.engine.wait_stopped(5)


@pytest.fixture
def ble(server: Server) -> Iterator[Ble]:
    service, link, central = start_ble(server.gateway.data_dir, server.url)
    try:
        wait_for(lambda: service.window.state.open, why=lambda: f"window {service.window.state}")
        yield Ble(service, link, central)
    finally:
        service.stop()
