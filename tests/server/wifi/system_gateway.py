"""A real gateway with the system service and the API on loopback, for the system tests (API and Wi-Fi)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from server.api import attach as api
from server.api.system_service import attach as system
from server.api.tokens import load_or_create
from server.audit import attach as audit
from server.config import FIELDS_BY_KEY, load
from server.crypto.service import attach as identity
from server.gateway import Gateway
from server.uplink.broker import free_port
from tests.server.api.conftest import Api
from tests.support import wait_for


@contextmanager
def system_gateway(
    data_dir: Path, env: dict[str, str] | None = None, extra: tuple[Any, ...] = (), **overrides: Any
) -> Iterator[Api]:
    """Start audit, identity, `extra`, system and API (127.0.0.1, free port; mDNS and WebSocket off unless asked)."""
    settings: dict[str, Any] = {
        "data_dir": data_dir,
        "stats_interval": 0,
        "identity.backend": "software",
        "api.host": "127.0.0.1",
        "api.port": free_port(),
        "mdns.enabled": False,
    }
    if "api.ws_port" in FIELDS_BY_KEY:
        settings["api.ws_port"] = 0  # the dashboard's WebSocket is not under test here
    settings.update(overrides)
    gw = Gateway(load(None, env=env or {}, overrides=settings), services=[audit, identity, *extra, system, api])
    try:
        gw.start()
        gw.engine.start_thread()
        wait_for(lambda: gw.engine.state == "running")
        tokens, _ = load_or_create(gw.data_dir)
        yield Api(gw, settings["api.port"], tokens.admin, tokens.read)
    finally:
        gw.stop()
        gw.engine.wait_stopped(5)
