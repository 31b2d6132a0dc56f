"""P1 port simulator: streams DSMR telegrams over TCP (a P1 bridge) or a pty (a P1 cable), with faults.

A real meter pushes a telegram every second (DSMR 5) or ten (DSMR 2.2-4) whether anyone listens or
not, so this one does too: it never waits for a reader and drops what a full pty cannot take.
Faults (settable while running, applied to every `every`-th telegram):
  corrupt   one digit changed after the CRC was computed (a CRC mismatch)
  truncate  the telegram is cut off halfway (the next one starts right after)
  silence   nothing is sent
Telegrams are recorded ones (tests/fixtures/dsmr) or made live by `dsmr5_telegram`.

    python -m modbus_slave.p1 --telegram tests/fixtures/dsmr/v5.txt --port 0       # TCP on 127.0.0.1
    python -m modbus_slave.p1 --pty                                                  # prints the pty path
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import threading
import time
import tty
from collections.abc import Callable, Sequence
from pathlib import Path

from server.devices import p1

from .signals import wait_for_signal

FAULTS = ("corrupt", "truncate", "silence")


def dsmr5_telegram(ts: float, import_wh: float, export_wh: float, power_w: float, gas_m3: float = 0.0) -> bytes:
    """A DSMR 5.0 three-phase telegram with these readings (power + import / - export), CRC included."""
    imp, exp = max(power_w, 0.0), max(-power_w, 0.0)
    stamp = p1.format_stamp(ts)
    lines = [
        "/SIM5\\2OHM-P1-SIMULATOR",
        "",
        "1-3:0.2.8(50)",
        f"0-0:1.0.0({stamp})",
        "0-0:96.1.1(4F484D53494D303030303031)",
        f"1-0:1.8.1({import_wh / 2000:010.3f}*kWh)",
        f"1-0:1.8.2({import_wh / 2000:010.3f}*kWh)",
        f"1-0:2.8.1({export_wh / 2000:010.3f}*kWh)",
        f"1-0:2.8.2({export_wh / 2000:010.3f}*kWh)",
        "0-0:96.14.0(0001)",
        f"1-0:1.7.0({imp / 1000:06.3f}*kW)",
        f"1-0:2.7.0({exp / 1000:06.3f}*kW)",
        "1-0:32.7.0(230.0*V)",
        "1-0:52.7.0(231.0*V)",
        "1-0:72.7.0(229.0*V)",
        f"1-0:31.7.0({abs(power_w) / 3 / 230:03.0f}*A)",
        f"1-0:21.7.0({imp / 3000:06.3f}*kW)",
        f"1-0:41.7.0({imp / 3000:06.3f}*kW)",
        f"1-0:61.7.0({imp / 3000:06.3f}*kW)",
        f"1-0:22.7.0({exp / 3000:06.3f}*kW)",
        f"1-0:42.7.0({exp / 3000:06.3f}*kW)",
        f"1-0:62.7.0({exp / 3000:06.3f}*kW)",
        "0-1:24.1.0(003)",
        "0-1:96.1.0(4730303339303031393336393930363139)",
        f"0-1:24.2.1({stamp})({gas_m3:09.3f}*m3)",
        "!",
    ]
    return p1.frame("\r\n".join(lines))


def corrupt(raw: bytes) -> bytes:
    """The same telegram with one digit changed after its CRC was computed."""
    i = raw.index(b"(") + 1
    while not chr(raw[i]).isdigit():
        i += 1
    digit = b"1" if raw[i : i + 1] != b"1" else b"2"
    return raw[:i] + digit + raw[i + 1 :]


class P1Simulator:
    """Pushes telegrams every `period` seconds to every TCP client and/or a pty."""

    def __init__(
        self,
        telegrams: Sequence[bytes] | Callable[[], bytes],
        *,
        period: float = 1.0,
        fault: str | None = None,
        every: int = 1,
    ) -> None:
        if fault is not None and fault not in FAULTS:
            raise ValueError(f"fault: one of {', '.join(FAULTS)}")
        self._source = telegrams
        self.period = period
        self.fault = fault
        self.every = max(1, every)
        self.sent = 0
        self.port = 0
        self.device = ""
        self._server: socket.socket | None = None
        self._clients: list[socket.socket] = []
        self._master: int | None = None
        self._slave: int | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # ---- endpoints ------------------------------------------------------------------------

    def serve_tcp(self, host: str = "127.0.0.1", port: int = 0) -> P1Simulator:
        """Listen for P1-bridge clients on `host:port` (loopback by default; 0 = a free port)."""
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((host, port))
        srv.listen(8)
        srv.settimeout(0.2)
        self._server, self.port = srv, srv.getsockname()[1]
        self._spawn(self._accept_loop, "p1sim-accept")
        return self

    def open_pty(self) -> P1Simulator:
        """Create a pty pair; a client opens `self.device` like a USB P1 cable."""
        master, slave = os.openpty()
        tty.setraw(slave)  # no line discipline: bytes arrive as sent (CR LF kept)
        os.set_blocking(master, False)
        self._master, self._slave, self.device = master, slave, os.ttyname(slave)
        return self

    def start(self) -> P1Simulator:
        """Begin pushing telegrams."""
        self._spawn(self._push_loop, "p1sim-push")
        return self

    def stop(self) -> None:
        """Stop pushing, close every socket and the pty."""
        self._stop.set()
        for t in self._threads:
            t.join(timeout=2)
        with self._lock:
            for c in self._clients:
                c.close()
            self._clients.clear()
        if self._server is not None:
            self._server.close()
        for fd in (self._master, self._slave):
            if fd is not None:
                os.close(fd)
        self._master = self._slave = None

    def drop_clients(self) -> None:
        """Close every TCP client connection (a bridge that reboots)."""
        with self._lock:
            for c in self._clients:
                c.close()
            self._clients.clear()

    # ---- internals ------------------------------------------------------------------------

    def _spawn(self, fn: Callable[[], None], name: str) -> None:
        t = threading.Thread(target=fn, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def _accept_loop(self) -> None:
        assert self._server is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.setblocking(False)
            with self._lock:
                self._clients.append(conn)

    def _next(self) -> bytes:
        if callable(self._source):
            return self._source()
        return self._source[self.sent % len(self._source)]

    def _push_loop(self) -> None:
        while not self._stop.is_set():
            raw = self._next()
            self.sent += 1
            fault = self.fault if self.sent % self.every == 0 else None
            if fault == "corrupt":
                raw = corrupt(raw)
            elif fault == "truncate":
                raw = raw[: len(raw) // 2]
            if fault != "silence":
                self._send(raw)
            self._stop.wait(self.period)

    def _send(self, raw: bytes) -> None:
        with self._lock:
            for c in list(self._clients):
                try:
                    c.sendall(raw)
                except (BlockingIOError, OSError):
                    self._clients.remove(c)  # a reader that cannot keep up or went away
                    c.close()
        if self._master is not None:
            try:
                os.write(self._master, raw)
            except (BlockingIOError, OSError):
                pass  # nobody reads the cable: a meter does not care


def main(argv: list[str] | None = None) -> int:
    """Run a P1 simulator until interrupted."""
    ap = argparse.ArgumentParser(prog="python -m modbus_slave.p1", description=__doc__.split("\n")[0])
    ap.add_argument("--telegram", action="append", help="recorded telegram file(s) to cycle (default: live DSMR 5)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="TCP port (0 = a free one)")
    ap.add_argument("--pty", action="store_true", help="also stream on a pty (its path is printed)")
    ap.add_argument("--period", type=float, default=1.0)
    ap.add_argument("--fault", choices=FAULTS)
    ap.add_argument("--every", type=int, default=1, help="apply the fault to every N-th telegram")
    args = ap.parse_args(argv)
    if args.telegram:
        source: Sequence[bytes] | Callable[[], bytes] = [Path(f).read_bytes() for f in args.telegram]
    else:
        t0 = time.time()
        source = lambda: dsmr5_telegram(time.time(), 1e6 + (time.time() - t0), 5e5, 800.0, 1234.5)  # noqa: E731
    sim = P1Simulator(source, period=args.period, fault=args.fault, every=args.every).serve_tcp(args.host, args.port)
    if args.pty:
        sim.open_pty()
    sim.start()
    print(f"P1 tcp {args.host}:{sim.port}" + (f" pty {sim.device}" if args.pty else ""), flush=True)
    return wait_for_signal(sim.stop)


if __name__ == "__main__":
    sys.exit(main())
