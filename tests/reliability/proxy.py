"""A loopback TCP fault proxy: cuts, delays and flaps a link (broker link, inverter link) on command.

Independent of `server`: `LinkProxy(upstream_port).start()` listens on 127.0.0.1 and a free port and
relays each client to the upstream. `cut()` closes every relayed connection and refuses new ones
(accepted, then closed at once: what a client sees when a link or peer goes away), `restore()` lets
them through again, `delay = s` holds every chunk that long in each direction. `Flapper` drives a
proxy through a `schedule()` of (up, down) phases: the outage patterns A, B and C, scaled in time.

    python -m tests.reliability.proxy --upstream 1883 --pattern A --scale 0.1   # a flapping link by hand
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import random
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

LOOPBACK = "127.0.0.1"

# The patterns of the robustness spec, in real seconds (scale them down for CI).
PATTERNS = {
    "A": "2 min up / 3 min down, repeated",
    "B": "random outages of 30 s-10 min, random up time of 30 s-10 min",
    "C": "an outage of 5-30 s every 15 min",
}


def schedule(pattern: str, *, scale: float = 1.0, cycles: int = 5, seed: int = 1) -> list[tuple[float, float]]:
    """(up seconds, down seconds) for `cycles` cycles of pattern A, B or C, every duration times `scale`."""
    rng = random.Random(seed)
    out: list[tuple[float, float]] = []
    for _ in range(cycles):
        if pattern == "A":
            up, down = 120.0, 180.0
        elif pattern == "B":
            up, down = rng.uniform(30, 600), rng.uniform(30, 600)
        elif pattern == "C":
            down = rng.uniform(5, 30)
            up = 900.0 - down  # one outage per 15-minute period
        else:
            raise ValueError(f"unknown pattern {pattern!r} (one of {', '.join(PATTERNS)})")
        out.append((up * scale, down * scale))
    return out


@dataclass
class _Pipe:
    """One relayed connection: the client side, the upstream side and chunks held back by the delay."""

    client: socket.socket
    upstream: socket.socket
    held: list[tuple[float, int, socket.socket, bytes]] = field(default_factory=list)  # (due, seq, to, data)

    def peer(self, sock: socket.socket) -> socket.socket:
        """The other end of `sock`."""
        return self.upstream if sock is self.client else self.client


class LinkProxy:
    """Relays 127.0.0.1:<port> to 127.0.0.1:<upstream_port>; one selector thread, no busy waiting."""

    def __init__(self, upstream_port: int, *, upstream_host: str = LOOPBACK, port: int = 0) -> None:
        if not upstream_host.startswith("127."):
            raise ValueError("the fault proxy relays to loopback addresses only")
        self.upstream = (upstream_host, upstream_port)
        self._listen = socket.create_server((LOOPBACK, port), reuse_port=False)
        self._listen.setblocking(False)
        self.port: int = self._listen.getsockname()[1]
        self.delay = 0.0
        self.up = True
        self.accepted = 0
        self.refused = 0
        self.cuts = 0
        self._pipes: dict[socket.socket, _Pipe] = {}
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._lock = threading.Lock()
        self._stop = False
        self._seq = 0
        self._thread = threading.Thread(target=self._run, name=f"link-proxy-{self.port}", daemon=True)

    # ---- control (any thread) ---------------------------------------------------------------

    def start(self) -> LinkProxy:
        """Start relaying."""
        self._sel.register(self._listen, selectors.EVENT_READ)
        self._sel.register(self._wake_r, selectors.EVENT_READ)
        self._thread.start()
        return self

    def cut(self) -> None:
        """Close every relayed connection and refuse new ones until restore()."""
        with self._lock:
            self.up = False
            self.cuts += 1
        self._wake()

    def restore(self) -> None:
        """Let connections through again."""
        with self._lock:
            self.up = True
        self._wake()

    def set_delay(self, seconds: float) -> None:
        """Hold every chunk `seconds` in each direction (0 = none)."""
        self.delay = max(0.0, seconds)
        self._wake()

    @property
    def connections(self) -> int:
        """Connections relayed right now."""
        with self._lock:
            return len({id(p) for p in self._pipes.values()})

    def stop(self) -> None:
        """Close everything and end the thread."""
        self._stop = True
        self._wake()
        if self._thread.is_alive():
            self._thread.join(5)
        for sock in (self._listen, self._wake_r, self._wake_w):
            sock.close()
        self._sel.close()

    def __enter__(self) -> LinkProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- the relay thread ---------------------------------------------------------------------

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def _run(self) -> None:
        try:
            while not self._stop:
                if not self.up:
                    self._close_all()
                timeout = self._next_due()
                for key, _ in self._sel.select(timeout):
                    sock = key.fileobj
                    if sock is self._wake_r:
                        with contextlib.suppress(BlockingIOError):
                            self._wake_r.recv(4096)
                    elif sock is self._listen:
                        self._accept()
                    else:
                        self._relay(sock)  # type: ignore[arg-type]
                self._release_due()
        finally:
            self._close_all()

    def _accept(self) -> None:
        try:
            client, _ = self._listen.accept()
        except BlockingIOError:
            return
        if not self.up:
            self.refused += 1
            client.close()
            return
        try:
            upstream = socket.create_connection(self.upstream, timeout=2.0)
        except OSError:
            self.refused += 1
            client.close()
            return
        for s in (client, upstream):
            s.settimeout(5.0)  # sends block at most this long (loopback peers read fast)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pipe = _Pipe(client, upstream)
        with self._lock:
            self._pipes[client] = self._pipes[upstream] = pipe
        self._sel.register(client, selectors.EVENT_READ)
        self._sel.register(upstream, selectors.EVENT_READ)
        self.accepted += 1

    def _relay(self, sock: socket.socket) -> None:
        pipe = self._pipes.get(sock)
        if pipe is None:
            return
        try:
            data = sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            self._close(pipe)
            return
        to = pipe.peer(sock)
        if self.delay <= 0 and not pipe.held:
            self._send(pipe, to, data)
        else:
            self._seq += 1
            heapq.heappush(pipe.held, (time.monotonic() + self.delay, self._seq, to, data))

    def _send(self, pipe: _Pipe, to: socket.socket, data: bytes) -> None:
        try:
            to.sendall(data)
        except OSError:
            self._close(pipe)

    def _release_due(self) -> None:
        now = time.monotonic()
        for pipe in {id(p): p for p in self._pipes.values()}.values():
            while pipe.held and pipe.held[0][0] <= now:
                _, _, to, data = heapq.heappop(pipe.held)
                self._send(pipe, to, data)
                if pipe.client not in self._pipes:
                    break

    def _next_due(self) -> float | None:
        dues = [p.held[0][0] for p in self._pipes.values() if p.held]
        return max(0.0, min(dues) - time.monotonic()) if dues else None

    def _close(self, pipe: _Pipe) -> None:
        with self._lock:
            for s in (pipe.client, pipe.upstream):
                self._pipes.pop(s, None)
        for s in (pipe.client, pipe.upstream):
            with contextlib.suppress(KeyError, ValueError):
                self._sel.unregister(s)
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def _close_all(self) -> None:
        for pipe in {id(p): p for p in list(self._pipes.values())}.values():
            self._close(pipe)


@dataclass
class Transition:
    """When the flapper changed the link (time.monotonic())."""

    at: float
    up: bool


class Flapper:
    """Drives a proxy through (up, down) phases on its own thread; records each transition."""

    def __init__(
        self, proxy: LinkProxy, phases: list[tuple[float, float]], on_change: Callable[[bool], None] | None = None
    ) -> None:
        self.proxy = proxy
        self.phases = phases
        self.on_change = on_change
        self.transitions: list[Transition] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="flapper", daemon=True)

    def start(self) -> Flapper:
        """Begin with the first up phase."""
        self._thread.start()
        return self

    def _set(self, up: bool) -> None:
        (self.proxy.restore if up else self.proxy.cut)()
        self.transitions.append(Transition(time.monotonic(), up))
        if self.on_change is not None:
            self.on_change(up)

    def _run(self) -> None:
        for up_s, down_s in self.phases:
            if self._stop.wait(up_s):
                break
            self._set(False)
            if self._stop.wait(down_s):
                break
            self._set(True)
        if not self.proxy.up:
            self._set(True)  # always leave the link up

    def done(self) -> bool:
        """All phases played."""
        return not self._thread.is_alive()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the phases to end."""
        self._thread.join(timeout)

    def stop(self) -> None:
        """End early; the link is left up."""
        self._stop.set()
        self._thread.join(10)

    def restores(self) -> Iterator[float]:
        """The times the link came back."""
        return (t.at for t in self.transitions if t.up)


def main() -> None:
    """Relay a local port with a pattern, for trying things by hand."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--upstream", type=int, required=True, help="upstream port on 127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="port to listen on (default: a free one)")
    ap.add_argument("--pattern", choices=sorted(PATTERNS), default="A")
    ap.add_argument("--scale", type=float, default=1.0, help="time factor (0.01: a 3 min outage lasts 1.8 s)")
    ap.add_argument("--cycles", type=int, default=10)
    ap.add_argument("--delay", type=float, default=0.0, help="added latency per direction in seconds")
    args = ap.parse_args()
    with LinkProxy(args.upstream, port=args.port) as proxy:
        proxy.set_delay(args.delay)
        print(f"127.0.0.1:{proxy.port} -> 127.0.0.1:{args.upstream}, pattern {args.pattern}", flush=True)
        flapper = Flapper(proxy, schedule(args.pattern, scale=args.scale, cycles=args.cycles))
        flapper.on_change = lambda up: print(f"{time.strftime('%H:%M:%S')} link {'up' if up else 'down'}", flush=True)
        flapper.start()
        try:
            flapper.join()
        except KeyboardInterrupt:
            flapper.stop()


if __name__ == "__main__":
    main()
