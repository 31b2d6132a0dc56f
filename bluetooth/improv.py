"""Improv Wi-Fi over BLE: frames, checksums, multi-write reassembly and commands (pure logic).

Spec: https://www.improv-wifi.com/ble/ - an RPC frame is [command, length, data..., checksum], the checksum
being the low byte of the sum of every byte before it. Results carry a list of length-prefixed strings.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class State(enum.IntEnum):
    """Current state characteristic values."""

    AUTHORIZATION_REQUIRED = 0x01
    AUTHORIZED = 0x02
    PROVISIONING = 0x03
    PROVISIONED = 0x04


class Error(enum.IntEnum):
    """Error state characteristic values."""

    NONE = 0x00
    INVALID_RPC = 0x01
    UNKNOWN_RPC = 0x02
    UNABLE_TO_CONNECT = 0x03
    NOT_AUTHORIZED = 0x04
    BAD_HOSTNAME = 0x05
    UNKNOWN = 0xFF


class Command(enum.IntEnum):
    """RPC command ids."""

    WIFI_SETTINGS = 0x01
    IDENTIFY = 0x02
    DEVICE_INFO = 0x03
    SCAN_NETWORKS = 0x04
    HOSTNAME = 0x05
    DEVICE_NAME = 0x06


class Capability(enum.IntFlag):
    """Capabilities characteristic bits."""

    IDENTIFY = 0x01
    DEVICE_INFO = 0x02
    SCAN = 0x04


CAPABILITIES = Capability.IDENTIFY | Capability.DEVICE_INFO | Capability.SCAN
# Commands that change something need the window (authorization); the others do not (spec).
NEEDS_AUTH = frozenset({Command.WIFI_SETTINGS, Command.SCAN_NETWORKS, Command.HOSTNAME, Command.DEVICE_NAME})


class FrameError(ValueError):
    """A frame with a bad checksum, a bad length or malformed strings."""


def checksum(data: bytes) -> int:
    """Low byte of the sum of all bytes."""
    return sum(data) & 0xFF


def frame(command: int, data: bytes) -> bytes:
    """[command, len, data..., checksum]."""
    if len(data) > 255:
        raise FrameError("frame data is over 255 bytes")
    head = bytes([command, len(data)]) + data
    return head + bytes([checksum(head)])


def encode_strings(strings: list[str]) -> bytes:
    """Length-prefixed UTF-8 strings, each at most 255 bytes."""
    out = bytearray()
    for text in strings:
        raw = text.encode()
        if len(raw) > 255:
            raise FrameError("a string is over 255 bytes")
        out += bytes([len(raw)]) + raw
    return bytes(out)


def decode_strings(data: bytes) -> list[str]:
    """The inverse of encode_strings; raises FrameError."""
    out, i = [], 0
    while i < len(data):
        n = data[i]
        if i + 1 + n > len(data):
            raise FrameError("a string runs past the data")
        try:
            out.append(data[i + 1 : i + 1 + n].decode())
        except UnicodeDecodeError as exc:
            raise FrameError("a string is not UTF-8") from exc
        i += 1 + n
    return out


def result(command: int, strings: list[str]) -> bytes:
    """An RPC result frame carrying `strings`."""
    return frame(command, encode_strings(strings))


def fit_result(command: int, strings: list[str], limit: int) -> bytes:
    """A result frame no longer than `limit` bytes: whole entries from the end are dropped to fit."""
    while True:
        data = encode_strings(strings)
        if (len(data) <= 255 and len(data) + 3 <= limit) or not strings:
            return frame(command, data[:255])
        strings = strings[:-3] if len(strings) % 3 == 0 and len(strings) >= 3 else strings[:-1]


@dataclass(frozen=True)
class Rpc:
    """A checked RPC command frame."""

    command: int
    data: bytes


class RpcAssembler:
    """Joins writes until a whole frame is there (commands over 20 bytes arrive in several writes)."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def reset(self) -> None:
        """Drop a partial frame."""
        self._buf.clear()

    def feed(self, chunk: bytes) -> Rpc | None:
        """Add one write; returns the frame when complete, None if more is due; raises FrameError."""
        self._buf += chunk
        if len(self._buf) < 2:
            return None
        need = self._buf[1] + 3
        if len(self._buf) < need:
            return None
        raw, extra = bytes(self._buf[:need]), len(self._buf) - need
        self._buf.clear()
        if extra:
            raise FrameError(f"{extra} bytes after the frame")
        if checksum(raw[:-1]) != raw[-1]:
            raise FrameError("bad checksum")
        return Rpc(raw[0], raw[2:-1])


def parse_wifi(data: bytes) -> tuple[str, str]:
    """SSID and password of a Wi-Fi settings command: [ssid_len, ssid, pw_len, pw]."""
    strings = decode_strings(data)
    if len(strings) != 2 or not strings[0]:
        raise FrameError("Wi-Fi settings need an SSID and a password (may be empty)")
    return strings[0], strings[1]


def service_data(state: State) -> bytes:
    """The 6 bytes of service data 4677: state, capabilities, 4 reserved zeros."""
    return bytes([state, CAPABILITIES, 0, 0, 0, 0])


def valid_hostname(name: str) -> bool:
    """An RFC 1123 host label: 1-63 of a-z, 0-9 and '-', not starting or ending with '-'."""
    ok = set("abcdefghijklmnopqrstuvwxyz0123456789-")
    return 0 < len(name) <= 63 and set(name.lower()) <= ok and name[0] != "-" and name[-1] != "-"
