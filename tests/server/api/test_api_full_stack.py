"""/api/state and /metrics with every service (outbox, uplink to a real mosquitto); a 500 that hides internals."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from server.api import attach as api
from server.api.app import create_app
from server.api.server import ApiServer
from server.api.tokens import Tokens, load_or_create
from server.config import load
from server.crypto.service import attach as identity
from server.devices import attach as devices
from server.gateway import Gateway
from server.outbox.service import attach as outbox
from server.statemachine import State
from server.telemetry.service import attach as telemetry
from server.uplink.service import attach as uplink

from .conftest import Client, free_port, wait_for

pytestmark = pytest.mark.integration


def test_state_and_metrics_show_uplink_and_outbox(mosquitto: Any, tmp_path: Path) -> None:
    overrides = {
        "data_dir": tmp_path / "gw",
        "stats_interval": 0,
        "identity.backend": "software",
        "mqtt.host": "127.0.0.1",
        "mqtt.port": mosquitto.port,
        "mqtt.backoff_max": 1.0,
        "api.host": "127.0.0.1",
        "api.port": free_port(),
    }
    services = [devices, identity, outbox, telemetry, uplink, api]
    gw = Gateway(load(None, env={}, overrides=overrides), services=services)
    try:
        gw.start()
        gw.engine.start_thread()
        wait_for(lambda: gw.state is State.ONLINE, 10)
        c = Client(gw.services["api"].port, load_or_create(gw.data_dir)[0].read)
        state = c.call("GET", "/api/state").json
        assert state["state"] == "online" and state["uplink"]["connected"] is True
        assert set(state["outbox"]) >= {"rows", "bytes", "dropped"}
        text = c.call("GET", "/metrics").body.decode()
        assert "ohm_uplink_connected 1" in text and "ohm_outbox_depth " in text
        c.close()
    finally:
        gw.stop()
        gw.engine.wait_stopped(5)


def test_an_internal_error_is_a_generic_500(caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> dict[str, Any]:
        raise RuntimeError("secret internals /var/lib/thing")

    gateway = SimpleNamespace(services={}, engine=SimpleNamespace(stats=broken, state="running"))
    tokens = Tokens("a" * 32, "r" * 32)
    srv = ApiServer(create_app(gateway, tokens), "127.0.0.1", 0).start()
    c = Client(srv.port, tokens.read)
    try:
        with caplog.at_level(logging.ERROR, "ohm.api"):
            got = c.call("GET", "/api/uptime")
        assert got.status == 500 and got.json == {"error": "internal", "detail": "internal error; see the gateway log"}
        assert "secret internals" in caplog.text  # the log has the trace, the client does not
        assert c.call("GET", "/health").status == 200  # the server lives on
    finally:
        c.close()
        srv.stop()
