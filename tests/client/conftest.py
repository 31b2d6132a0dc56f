"""Fixtures for the client tests: a real gateway with its API on loopback, client/ served on loopback."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from server.api import attach as api
from server.api.tokens import load_or_create
from server.audit import attach as audit
from server.config import load
from server.crypto.service import attach as identity
from server.devices import attach as devices
from server.gateway import Gateway
from server.uplink.broker import free_port
from tests.client.harness import chromium_available, static_site
from tests.support import wait_for


@dataclass
class ServerApi:
    """The running gateway, its API URL and admin token."""

    gateway: Gateway
    url: str
    admin: str


@pytest.fixture
def server_api(tmp_path: Path) -> Iterator[ServerApi]:
    """A real `server` gateway (devices, identity, audit, API) with the API on 127.0.0.1 and a free port."""
    port = free_port()
    overrides = {
        "data_dir": tmp_path / "gw",
        "stats_interval": 0,
        "identity.backend": "software",
        "api.host": "127.0.0.1",
        "api.port": port,
        "api.ws_port": 0,  # no dashboard WebSocket: its default port is fixed
    }
    gw = Gateway(load(None, env={}, overrides=overrides), services=[audit, devices, identity, api])
    try:
        gw.start()
        gw.engine.start_thread()
        wait_for(lambda: gw.engine.state == "running")
        tokens, _ = load_or_create(gw.data_dir)
        yield ServerApi(gw, f"http://127.0.0.1:{port}", tokens.admin)
    finally:
        gw.stop()
        gw.engine.wait_stopped(5)


@pytest.fixture(scope="session")
def site_url() -> Iterator[str]:
    """client/ on a loopback static HTTP server (127.0.0.1 is a secure context, so WebCrypto works)."""
    if not chromium_available():
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; `make sysdeps` must install it in CI")
        pytest.skip("chromium is not installed (apt-get install chromium); `make test` installs it")
    with static_site() as url:
        yield url
