"""Fixtures for the client tests: a real gateway with its API on loopback (optionally with Wi-Fi on
NetworkManager's mock), client/ served on loopback."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from server.api import attach as api
from server.api.tokens import load_or_create
from server.audit import attach as audit
from server.crypto.service import attach as identity
from server.devices import attach as devices
from server.gateway import Gateway
from tests.client.harness import Site, static_site
from tests.server.wifi.privatebus import MockNM, mock_nm  # noqa: F401 - NetworkManager (dbusmock) on a private bus
from tests.support import api_settings, chromium_available, started_gateway


@dataclass
class ServerApi:
    """The running gateway, its API URL and admin token."""

    gateway: Gateway
    url: str
    admin: str


@contextlib.contextmanager
def running_gateway(data_dir: Path, services: list[Any], **settings: Any) -> Iterator[ServerApi]:
    """A real `server` gateway with the API on 127.0.0.1 and a free port (no dashboard WebSocket, no mDNS)."""
    overrides = api_settings(data_dir, **settings)
    with started_gateway(overrides, services) as gw:
        tokens, _ = load_or_create(gw.data_dir)
        yield ServerApi(gw, f"http://127.0.0.1:{overrides['api.port']}", tokens.admin)


@pytest.fixture
def server_api(tmp_path: Path) -> Iterator[ServerApi]:
    """Devices, identity, audit and the API; no system service (Wi-Fi, owner, provisioning answered elsewhere)."""
    with running_gateway(tmp_path / "gw", [audit, devices, identity, api]) as server:
        yield server


@pytest.fixture
def system_api(tmp_path: Path, mock_nm: MockNM) -> Iterator[ServerApi]:  # noqa: F811 - the fixture
    """Also the system service (owner, provisioning window, Wi-Fi) on NetworkManager's mock with two networks."""
    from server.api.system_service import attach as system

    mock_nm.add_ap("ap1", "HomeNet", 80)
    mock_nm.add_ap("ap2", "Cafe", 30, security=0)
    services = [audit, devices, identity, system, api]
    with running_gateway(tmp_path / "gw", services, **{"system.dbus_address": mock_nm.address}) as server:
        yield server


@pytest.fixture(scope="session")
def site() -> Iterator[Site]:
    """client/ on a loopback static HTTP server (127.0.0.1 is a secure context, so WebCrypto works) and one
    headless chromium for the session."""
    if not chromium_available():
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; `make sysdeps` must install it in CI")
        pytest.skip("chromium is not installed (apt-get install chromium); `make test` installs it")
    with static_site() as url:
        shared = Site(url)
        try:
            yield shared.start()
        finally:
            shared.close()
