"""The live WebSocket with a real websockets client on loopback, against a real gateway and simulator."""

from __future__ import annotations

import itertools
import json
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from modbus_slave.server import Simulator
from server.api import attach as api
from server.api.live import CLOSE_AUTH, CLOSE_BUSY, CLOSE_LIMITED, WS_PATH, LiveServer
from server.api.tokens import Tokens, load_or_create
from server.audit import attach as audit
from server.bus import Point, Snapshot
from server.config import FIELDS_BY_KEY, load
from server.crypto.service import attach as identity
from server.devices import attach as devices
from server.gateway import Gateway
from server.uplink.broker import free_port

from .conftest import wait_for

NINE_AM = 1_699_952_400.0  # 2023-11-14 09:00 UTC: PV power climbs steeply here


@dataclass
class LiveGateway:
    """A running gateway with the API and the live WebSocket on loopback."""

    gateway: Gateway
    port: int
    ws_port: int
    tokens: Tokens

    @property
    def ws_url(self) -> str:
        """Where the live WebSocket listens."""
        return f"ws://127.0.0.1:{self.ws_port}{WS_PATH}"

    def login(self, token: str | None = None, **kw: Any) -> ClientConnection:
        """A connected client that has sent its token."""
        ws = connect(self.ws_url, open_timeout=5, close_timeout=1, **kw)
        ws.send(json.dumps({"token": token or self.tokens.read}))
        return ws


@contextmanager
def live_gateway(tmp_path: Path, extra: tuple[Any, ...] = (), **overrides: Any) -> Iterator[LiveGateway]:
    """Start a gateway (audit, devices, identity, `extra` services, API + live WebSocket) and stop it afterwards."""
    settings = {
        "data_dir": tmp_path / "gw",
        "stats_interval": 0,
        "identity.backend": "software",
        "api.host": "127.0.0.1",
        "api.port": free_port(),
        "api.ws_port": free_port(),
        # No multicast announcements from tests (and no waiting for their goodbye at shutdown).
        **({"mdns.enabled": False} if "mdns.enabled" in FIELDS_BY_KEY else {}),
        **overrides,
    }
    gw = Gateway(load(None, env={}, overrides=settings), services=[audit, devices, identity, *extra, api])
    try:
        gw.start()
        gw.engine.start_thread()
        wait_for(lambda: gw.engine.state == "running")
        tokens, _ = load_or_create(gw.data_dir)
        yield LiveGateway(gw, settings["api.port"], settings["api.ws_port"], tokens)
    finally:
        gw.stop()
        gw.engine.wait_stopped(5)


@contextmanager
def fast_simulator() -> Iterator[Simulator]:
    """A simulated SMA inverter whose day runs 600 times faster (values change every poll)."""
    start = time.time()
    sim = Simulator("sma", clock=lambda: NINE_AM + (time.time() - start) * 600).start()
    try:
        yield sim
    finally:
        sim.stop()


def frame(ws: ClientConnection, timeout: float = 5.0) -> dict[str, Any]:
    """The next frame."""
    got = json.loads(ws.recv(timeout=timeout))
    assert got["type"] == "frame"
    return got


def closed_with(ws: ClientConnection) -> int | None:
    """The close code the server sent (waits for the close)."""
    with pytest.raises(ConnectionClosed) as info:
        for _ in range(10):
            ws.recv(timeout=5)
    return info.value.rcvd.code if info.value.rcvd else None


@pytest.mark.integration
def test_frames_at_1hz_with_changing_values(tmp_path: Path) -> None:
    with fast_simulator() as sim, live_gateway(tmp_path) as lg:
        dev = {"id": "inv", "profile": "sma", "transport": "tcp", "host": "127.0.0.1", "port": sim.port, "interval": 1}
        lg.gateway.services["devices"].add(dev)
        ws = lg.login(lg.tokens.admin)  # either token works
        try:
            first = frame(ws)
            assert first["gateway"]["state"] and first["engine"]["state"] == "running"
            assert "p99" in first["engine"]["lateness_ms"]
            wait_for(lambda: frame(ws)["devices"][0]["status"] == "online", 10)
            frames, arrived = [], []
            for _ in range(4):
                frames.append(frame(ws))
                arrived.append(time.monotonic())
            gaps = [b - a for a, b in itertools.pairwise(arrived)]
            # ~1 Hz: the ticks are drift-free, so the mean is tight even when one frame is late on a busy machine.
            assert 0.8 < sum(gaps) / len(gaps) < 1.25 and max(gaps) < 2.5, gaps
            card = frames[-1]["devices"][0]
            assert card["id"] == "inv" and card["profile"] == "sma" and card["age_s"] < 5
            assert card["points"]["pv.power_w"]["u"] == "W" and card["points"]["pv.power_w"]["q"] == "ok"
            powers = {f["devices"][0]["points"]["pv.power_w"]["v"] for f in frames}
            assert len(powers) >= 2, powers  # live values move
            assert frames[-1]["actions"] == {"rev": 0, "newest": None, "ids": [], "count": 0}
            # An action shows up as a new revision in the next frames (the page then fetches /api/actions).
            lg.gateway.services["audit"].record("admin@127.0.0.1", "PATCH /api/devices/inv", "ok")
            newest = wait_for(lambda: frame(ws)["actions"]["newest"], 5)
            assert newest == 1
            assert lg.gateway.services["live"].stats()["clients"] == 1
        finally:
            ws.close()


@pytest.mark.integration
def test_wrong_or_missing_token_is_closed_4401_then_rate_limited(tmp_path: Path) -> None:
    with live_gateway(tmp_path) as lg:
        ws = lg.login("not-the-token")
        assert closed_with(ws) == CLOSE_AUTH
        ws = connect(lg.ws_url, open_timeout=5)
        ws.send("hello")  # not JSON with a token
        assert closed_with(ws) == CLOSE_AUTH
        # The limiter is shared with HTTP: ten failures from 127.0.0.1 in a minute, then 4429 even for the right token.
        for _ in range(8):
            assert closed_with(lg.login("wrong")) == CLOSE_AUTH
        # Refused before the token is even read (so even the right token cannot be tried).
        assert closed_with(connect(lg.ws_url, open_timeout=5)) == CLOSE_LIMITED
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", lg.port, timeout=5)
        conn.request("GET", "/api/dashboard", headers={"Authorization": f"Bearer {lg.tokens.read}"})
        assert conn.getresponse().status == 429
        conn.close()


@pytest.mark.integration
def test_silent_client_is_closed_after_the_auth_timeout(tmp_path: Path) -> None:
    with live_gateway(tmp_path) as lg:
        live = lg.gateway.services["live"]
        live.auth_timeout = 0.3
        ws = connect(lg.ws_url, open_timeout=5)
        assert closed_with(ws) == CLOSE_AUTH


@pytest.mark.integration
def test_wrong_path_is_404(tmp_path: Path) -> None:
    with live_gateway(tmp_path) as lg, pytest.raises(InvalidStatus) as info:
        connect(f"ws://127.0.0.1:{lg.ws_port}/other", open_timeout=5)
    assert info.value.response.status_code == 404


@pytest.mark.integration
def test_many_clients_share_one_frame_and_the_cap_holds(tmp_path: Path) -> None:
    with live_gateway(tmp_path) as lg:
        live: LiveServer = lg.gateway.services["live"]
        live.max_clients = 12
        clients = [lg.login() for _ in range(12)]
        try:
            firsts = [frame(ws) for ws in clients]
            assert all(f["devices"] == [] for f in firsts)
            wait_for(lambda: live.stats()["clients"] == 12)
            before = live.counters["frames"]
            seconds = [frame(ws) for ws in clients]
            # Everyone got the same broadcast: one frame text built per tick, not one per client.
            assert len({json.dumps(f, sort_keys=True) for f in seconds}) <= 2
            assert live.counters["frames"] - before <= 3
            extra = connect(lg.ws_url, open_timeout=5)
            assert closed_with(extra) == CLOSE_BUSY
            assert live.counters["refused_busy"] == 1
        finally:
            for ws in clients:
                ws.close()
        wait_for(lambda: live.stats()["connections"] == 0)


def _fat_snapshots(gw: Gateway, n: int = 40) -> None:
    """Publish enough devices with enough points that a frame is ~40 kB (fills buffers quickly)."""
    now = gw.engine.clock.monotonic()
    for i in range(n):
        points = {f"x.point_{k:02d}": Point(float(i * 100 + k), "W") for k in range(20)}
        gw.bus.publish(Snapshot(f"dev{i:02d}", time.time(), now, True, points, "generic"))


@pytest.mark.integration
def test_a_client_that_stops_reading_is_dropped_others_keep_their_frames(tmp_path: Path) -> None:
    with live_gateway(tmp_path) as lg:
        live: LiveServer = lg.gateway.services["live"]
        live.interval = 0.02  # 50 frames/s of ~40 kB: the slow client's socket and write buffers fill in ~2 s
        live.max_buffer = 64 * 1024
        _fat_snapshots(lg.gateway)
        good = lg.login(max_queue=None)  # reads everything as it comes (an unbounded queue): never slow
        # A raw socket with a tiny receive window that never reads past the handshake.
        slow = socket.create_connection(("127.0.0.1", lg.ws_port), timeout=5)
        try:
            slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            key = "dGhlIHNhbXBsZSBub25jZQ=="
            slow.sendall(
                (
                    f"GET {WS_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                ).encode()
            )
            assert slow.recv(1024).startswith(b"HTTP/1.1 101")
            payload = json.dumps({"token": lg.tokens.read}).encode()
            mask = b"\x01\x02\x03\x04"
            masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            slow.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + masked)  # one masked text frame (client rule)
            wait_for(lambda: live.counters["dropped_slow"] >= 1, 20)
            assert live.stats()["clients"] == 1  # the good client is still there
            for _ in range(5):  # and still gets frames, drained as fast as they come
                assert len(frame(good)["devices"]) == 40
        finally:
            slow.close()
            good.close()


@pytest.mark.integration
def test_ws_port_zero_means_off_and_a_busy_port_leaves_the_api_running(tmp_path: Path) -> None:
    with live_gateway(tmp_path / "a", **{"api.ws_port": 0}) as lg:
        assert "live" not in lg.gateway.services
        assert "api" in lg.gateway.services
    busy = socket.socket()
    try:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with live_gateway(tmp_path / "b", **{"api.ws_port": busy.getsockname()[1]}) as lg:
            assert "live" not in lg.gateway.services and "api" in lg.gateway.services
    finally:
        busy.close()


@pytest.mark.integration
def test_clients_are_closed_and_the_thread_ends_on_shutdown(tmp_path: Path) -> None:
    import threading

    with live_gateway(tmp_path) as lg:
        ws = lg.login()
        frame(ws)
        lg.gateway.stop()
        lg.gateway.engine.wait_stopped(5)
        with pytest.raises(ConnectionClosed):
            for _ in range(5):
                ws.recv(timeout=5)
        ws.close()
    assert not [t for t in threading.enumerate() if t.name == "ohm-live"]
