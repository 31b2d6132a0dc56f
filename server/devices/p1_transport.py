"""Blocking P1 readers: a P1 cable on a serial port (pyserial) or a P1-to-TCP bridge / telnet dongle.

The meter pushes a telegram every second (DSMR 5, e-MUCS) or every ten (DSMR 2.2-4). A fetch takes
what arrived since the last one and returns the newest telegram whose CRC checks; if none is complete
yet it waits for the next one, up to the link timeout (then the device counts as offline). Corrupt
telegrams are skipped, counted per link and logged once. Runs on the device's lane in a worker.
"""

from __future__ import annotations

import logging
import socket
import termios
import threading
import time
from typing import Any

from . import p1
from .transport import DeviceIOError, Link

log = logging.getLogger("ohm.devices.p1")

_rejects_lock = threading.Lock()
_rejects: dict[str, int] = {}  # link key -> corrupt telegrams seen (kept across reconnects)


def rejected(key: str) -> int:
    """How many corrupt telegrams a link has delivered since the gateway started."""
    with _rejects_lock:
        return _rejects.get(key, 0)


def _reject(key: str, where: str, why: str) -> None:
    with _rejects_lock:
        _rejects[key] = count = _rejects.get(key, 0) + 1
    if count == 1:
        log.warning("P1 %s: telegram rejected: %s (further rejections are counted in the device health)", where, why)
    else:
        log.debug("P1 %s: telegram rejected (%d so far): %s", where, count, why)


class P1Client:
    """One open P1 stream; `fetch()` returns the newest valid telegram."""

    def __init__(self, link: Link) -> None:
        self.link = link
        self._buf = b""
        self._sock: socket.socket | None = None
        self._serial: Any = None
        if link.transport == "p1_tcp":
            self.where = f"{link.host}:{link.port}"
            try:
                self._sock = socket.create_connection((link.host, link.port), timeout=link.timeout)
            except OSError as exc:
                raise DeviceIOError(f"cannot connect to P1 bridge {self.where}: {exc.strerror or exc}") from None
        else:
            import serial

            self.where = link.device
            seven = link.parity == "E"  # DSMR 2.2/3: 9600 baud 7E1; DSMR 4/5: 115200 baud 8N1
            try:
                self._serial = serial.Serial(
                    link.device,
                    baudrate=link.baudrate,
                    bytesize=serial.SEVENBITS if seven else serial.EIGHTBITS,
                    parity=serial.PARITY_EVEN if seven else serial.PARITY_NONE,
                    stopbits=serial.STOPBITS_ONE,
                    timeout=0,
                )
            except (OSError, ValueError, serial.SerialException) as exc:
                raise DeviceIOError(f"cannot open P1 port {link.device}: {exc}") from None

    def fetch(self) -> p1.Telegram:
        """The newest valid telegram (waits up to the link timeout for one)."""
        deadline = time.monotonic() + self.link.timeout
        self._buf += self._read(0.0)
        while True:
            frames, self._buf = p1.split_frames(self._buf)
            newest: p1.Telegram | None = None
            for raw in frames:
                try:
                    newest = p1.parse_telegram(raw)
                except p1.TelegramError as exc:
                    _reject(self.link.key, self.where, str(exc))
            if newest is not None:
                return newest
            left = deadline - time.monotonic()
            if left <= 0:
                raise DeviceIOError(f"P1 {self.where}: no valid telegram within {self.link.timeout:g} s")
            self._buf += self._read(left)

    def _read(self, wait: float) -> bytes:
        """Whatever is available now, or (wait > 0) the next bytes within `wait` seconds."""
        try:
            if self._sock is not None:
                return self._recv(wait)
            return self._serial_read(wait)
        except OSError as exc:
            raise DeviceIOError(f"P1 {self.where}: {exc.strerror or exc}") from None

    def _recv(self, wait: float) -> bytes:
        assert self._sock is not None
        chunks = []
        self._sock.settimeout(wait if wait > 0 else 0.0)
        try:
            while True:
                chunk = self._sock.recv(65536)
                if not chunk:
                    raise DeviceIOError(f"P1 bridge {self.where} closed the connection")
                chunks.append(chunk)
                self._sock.settimeout(0.0)  # got something: take the rest of what is buffered, no more waiting
        except (BlockingIOError, TimeoutError):
            pass
        return b"".join(chunks)

    def _serial_read(self, wait: float) -> bytes:
        import select

        import serial

        try:
            if not self._serial.in_waiting and wait > 0:
                # select, not a read timeout: changing pyserial's timeout reconfigures the port every call
                select.select([self._serial.fileno()], [], [], min(wait, 1.0))
            waiting = self._serial.in_waiting
            return self._serial.read(waiting) if waiting else b""
        except (serial.SerialException, termios.error) as exc:
            raise DeviceIOError(f"P1 {self.where}: {exc}") from None

    def read(self, fc: int, address: int, count: int, unit: int) -> list[int]:
        """P1 has no registers."""
        raise DeviceIOError("a P1 meter has no Modbus registers")

    def write(self, address: int, values: list[int], unit: int, fc: int = 16) -> None:
        """P1 is read-only."""
        raise DeviceIOError("a P1 meter cannot be written")

    def close(self) -> None:
        """Close the socket or serial port."""
        if self._sock is not None:
            self._sock.close()
        if self._serial is not None:
            self._serial.close()
