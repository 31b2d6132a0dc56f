"""A REST suite run against a live gateway.

    pytest server_rest_test --gateway-url http://127.0.0.1:8080 --token ADMIN --read-token READ \
        [--modbus-host 127.0.0.1 --modbus-port 1502]          # a Modbus device the gateway can reach

or GATEWAY_URL / GATEWAY_TOKEN / GATEWAY_READ_TOKEN / GATEWAY_MODBUS in the environment. Without a URL the
suite starts its own gateway (`python -m server run`) and an SMA simulator on loopback. Against a gateway
it did not start, the suite never restarts or reboots it and puts back the settings it changes.
Every test names the endpoints it exercises (`@pytest.mark.endpoint("GET /api/...")`); a test fails if
an endpoint of /api/openapi.json has none.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("gateway", "the live gateway under test")
    g.addoption("--gateway-url", default=os.environ.get("GATEWAY_URL", ""), help="base URL (default: start one)")
    g.addoption("--token", default=os.environ.get("GATEWAY_TOKEN", ""), help="admin token")
    g.addoption("--read-token", default=os.environ.get("GATEWAY_READ_TOKEN", ""), help="read token")
    g.addoption(
        "--modbus", default=os.environ.get("GATEWAY_MODBUS", ""), help="HOST:PORT of an SMA-profile Modbus device"
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "endpoint(*ops): the API operations ('GET /api/x') this test exercises")


@dataclass
class Reply:
    """An HTTP answer."""

    status: int
    body: bytes
    headers: dict[str, str]

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class Gateway:
    """The gateway under test and how to reach it."""

    url: str
    admin: str
    read: str
    modbus: tuple[str, int]
    owned: bool
    proc: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)
    log: Path | None = None

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        token: str | None = "admin",
        raw: bytes | None = None,
        timeout: float = 30.0,
    ) -> Reply:
        """One request; token 'admin', 'read', None or a literal token."""
        tok = {"admin": self.admin, "read": self.read}.get(token, token) if token else None
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if tok:
            req.add_header("Authorization", f"Bearer {tok}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return Reply(resp.status, resp.read(), dict(resp.headers))
        except urllib.error.HTTPError as exc:
            return Reply(exc.code, exc.read(), dict(exc.headers))

    def wait(self, cond: Any, timeout: float = 15.0) -> Any:
        """Poll `cond()` until truthy."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = cond()
            if got:
                return got
            time.sleep(0.05)
        raise AssertionError(f"condition not met within {timeout} s")

    def start(self) -> None:
        """(Owned gateways) start the process and wait until /health answers."""
        assert self.log is not None
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "server", "run"], cwd=ROOT, env=self.env, stdout=log, stderr=log
            )
        self.wait(lambda: self._healthy(), 30)

    def _healthy(self) -> bool:
        try:
            return self.call("GET", "/health", token=None, timeout=1).status == 200
        except OSError:
            return False

    def stop(self) -> None:
        """(Owned gateways) SIGTERM and wait."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def gw(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    opt = request.config.getoption
    modbus = opt("--modbus")
    sim = None
    if not modbus:
        from modbus_slave.server import Simulator

        sim = Simulator("sma", clock=lambda: 1_699_963_200.0).start()  # held at solar noon: steady values
        modbus = f"127.0.0.1:{sim.port}"
    host, _, port = modbus.rpartition(":")
    url = opt("--gateway-url").rstrip("/")
    try:
        if url:
            if not opt("--token") or not opt("--read-token"):
                pytest.exit("--token and --read-token (or GATEWAY_TOKEN, GATEWAY_READ_TOKEN) are needed with a URL", 2)
            yield Gateway(url, opt("--token"), opt("--read-token"), (host, int(port)), owned=False)
            return
        data = tmp_path_factory.mktemp("gateway")
        api = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("OHM_")}
        env.update(
            OHM_DATA_DIR=str(data / "data"),
            OHM_API_HOST="127.0.0.1",
            OHM_API_PORT=str(api),
            OHM_API_WS_PORT=str(_free_port()),
            OHM_MDNS_ENABLED="false",
            OHM_STATS_INTERVAL="0",
            OHM_IDENTITY_BACKEND="software",
            OHM_SYSTEM_DBUS_ADDRESS="unix:path=" + str(data / "no-bus"),  # no NetworkManager/logind: clear 503s
            OHM_WIFI_CONNECT_TIMEOUT="2",
        )
        g = Gateway(f"http://127.0.0.1:{api}", "", "", (host, int(port)), owned=True, env=env, log=data / "gateway.log")
        g.start()
        tokens = json.loads((data / "data" / "api_tokens.json").read_text())
        g.admin, g.read = tokens["admin"], tokens["read"]
        try:
            yield g
        finally:
            g.stop()
    finally:
        if sim is not None:
            sim.stop()


@pytest.fixture(scope="session")
def device(gw: Gateway) -> Iterator[str]:
    """A device on the gateway (the simulator, or --modbus), removed at the end."""
    dev_id = f"resttest{os.getpid()}"
    got = gw.call(
        "POST",
        "/api/devices",
        {"id": dev_id, "profile": "sma", "host": gw.modbus[0], "port": gw.modbus[1], "interval": 1},
    )
    assert got.status == 201, got.body
    try:
        yield dev_id
    finally:
        gw.call("DELETE", f"/api/devices/{dev_id}")
