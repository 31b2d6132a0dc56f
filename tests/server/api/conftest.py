"""A real gateway with the API on loopback (waitress on 127.0.0.1 and a free port), plus an HTTP helper."""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from server.api import attach as api
from server.api.system_service import attach as system
from server.api.tokens import load_or_create
from server.audit import attach as audit
from server.crypto.service import attach as identity
from server.devices import attach as devices
from server.gateway import Gateway
from server.uplink.broker import free_port
from tests import support
from tests.support import api_settings, started_gateway

__all__ = ["Api", "free_port", "wait_for"]


def wait_for(cond: Callable[[], Any], timeout: float = 5.0) -> Any:
    """The shared wait_for with this package's shorter default."""
    return support.wait_for(cond, timeout)


@dataclass
class Reply:
    """An HTTP answer: status, headers, raw body and parsed JSON (None if not JSON)."""

    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


class Client:
    """Real HTTP over loopback with http.client (one keep-alive connection)."""

    def __init__(self, port: int, token: str | None = None) -> None:
        self.port = port
        self.token = token
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = "default",
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        """Send one request and read the whole answer."""
        hdrs = dict(headers or {})
        tok = self.token if token == "default" else token
        if tok:
            hdrs["Authorization"] = f"Bearer {tok}"
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        if data is not None:
            hdrs.setdefault("Content-Type", "application/json")
        self.conn.request(method, path, body=data, headers=hdrs)
        resp = self.conn.getresponse()
        out = Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
        if resp.getheader("Connection", "").lower() == "close":
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
        return out

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()


@dataclass
class Api:
    """The running gateway, its port and tokens."""

    gateway: Gateway
    port: int
    admin: str
    read: str

    def client(self, token: str | None = None) -> Client:
        """A client using `token` by default."""
        return Client(self.port, token)


@pytest.fixture
def api_gateway(tmp_path: Path) -> Iterator[Api]:
    settings = api_settings(tmp_path / "gw")
    with started_gateway(settings, [audit, devices, identity, system, api]) as gw:
        tokens, created = load_or_create(gw.data_dir)
        assert not created
        yield Api(gw, settings["api.port"], tokens.admin, tokens.read)
