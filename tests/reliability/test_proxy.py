"""The fault harness itself: schedules are right, and the proxy really cuts, restores and delays."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Iterator

import pytest

from tests.support import wait_for

from .proxy import Flapper, LinkProxy, schedule


@pytest.mark.parametrize(
    ("pattern", "up", "down"),
    [("A", (120, 120), (180, 180)), ("B", (30, 600), (30, 600)), ("C", (870, 895), (5, 30))],
)
def test_schedule_patterns_stay_in_their_ranges(pattern, up, down):
    phases = schedule(pattern, scale=1.0, cycles=50, seed=7)
    assert len(phases) == 50
    assert all(up[0] <= u <= up[1] and down[0] <= d <= down[1] for u, d in phases)
    if pattern == "C":
        assert all(abs(u + d - 900) < 1e-9 for u, d in phases)  # one outage per 15 minutes
    scaled = schedule(pattern, scale=0.01, cycles=50, seed=7)
    assert scaled == [(u * 0.01, d * 0.01) for u, d in phases]


def test_schedule_b_is_random_but_reproducible():
    assert schedule("B", seed=1) == schedule("B", seed=1) != schedule("B", seed=2)
    with pytest.raises(ValueError, match="unknown pattern"):
        schedule("Z")


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(4096):
            self.request.sendall(data)


@pytest.fixture
def echo() -> Iterator[int]:
    srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield srv.server_address[1]
    finally:
        srv.shutdown()
        srv.server_close()
        t.join(5)


def _roundtrip(port: int, data: bytes = b"ping") -> tuple[bytes, float]:
    with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
        t0 = time.monotonic()
        s.sendall(data)
        got = b""
        while len(got) < len(data):
            try:
                chunk = s.recv(4096)
            except ConnectionResetError:  # refused while the link is down
                chunk = b""
            if not chunk:
                break
            got += chunk
        return got, time.monotonic() - t0


def test_proxy_relays_cuts_restores_and_delays(echo):
    with LinkProxy(echo) as proxy:
        assert _roundtrip(proxy.port)[0] == b"ping"
        held = socket.create_connection(("127.0.0.1", proxy.port), timeout=3)
        try:
            held.sendall(b"x")
            assert held.recv(1) == b"x"
            proxy.cut()
            assert held.recv(1) == b""  # the open connection is closed by the cut
        finally:
            held.close()
        assert _roundtrip(proxy.port)[0] == b""  # new connections are refused while down
        assert proxy.refused >= 1
        proxy.restore()
        assert _roundtrip(proxy.port)[0] == b"ping"
        proxy.set_delay(0.2)
        got, took = _roundtrip(proxy.port)
        assert got == b"ping" and took >= 0.35  # held 0.2 s each way
        proxy.set_delay(0)
        wait_for(lambda: proxy.connections == 0, 3)


def test_flapper_plays_the_phases_and_leaves_the_link_up(echo):
    with LinkProxy(echo) as proxy:
        seen: list[bool] = []
        flapper = Flapper(proxy, [(0.05, 0.1), (0.05, 0.1)], on_change=seen.append).start()
        flapper.join(5)
        assert flapper.done() and seen == [False, True, False, True]
        assert proxy.up and proxy.cuts == 2
        downs = [t.at for t in flapper.transitions if not t.up]
        ups = list(flapper.restores())
        assert all(0.08 <= u - d < 1.0 for d, u in zip(downs, ups, strict=True))
