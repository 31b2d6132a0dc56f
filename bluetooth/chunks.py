"""Chunking of Ohm channel messages to the ATT MTU, and per-connection reassembly (pure logic)."""

from __future__ import annotations

from dataclasses import dataclass

HEADER = 3  # req, idx, flags
LAST = 0x01
MAX_VALUE = 512  # a GATT value is at most 512 bytes
MAX_CHUNKS = 255
MAX_MESSAGE = 60 * 1024


class TooLarge(ValueError):
    """The message does not fit 255 chunks at this MTU, or is over 60 KiB."""


def payload_size(mtu: int) -> int:
    """Payload bytes per chunk for an ATT MTU: min(mtu - 3, 512) - 3."""
    return min(mtu - 3, MAX_VALUE) - HEADER


def max_message(mtu: int) -> int:
    """The largest message that fits at this MTU."""
    return min(MAX_MESSAGE, MAX_CHUNKS * payload_size(mtu))


def split(req: int, data: bytes, mtu: int) -> list[bytes]:
    """Cut `data` into chunks for request `req` at `mtu`; raises TooLarge."""
    if len(data) > max_message(mtu):
        raise TooLarge(f"{len(data)} bytes do not fit {MAX_CHUNKS} chunks at MTU {mtu}")
    size = payload_size(mtu)
    parts = [data[i : i + size] for i in range(0, len(data), size)] or [b""]
    last = len(parts) - 1
    return [bytes([req & 0xFF, idx, LAST if idx == last else 0]) + part for idx, part in enumerate(parts)]


@dataclass(frozen=True)
class Assembled:
    """Outcome of one chunk: a whole message, a framing error, or nothing yet (both None)."""

    req: int
    message: bytes | None = None
    status: int | None = None
    error: str | None = None
    detail: str = ""


class Reassembler:
    """Joins chunks of one connection; one message at a time."""

    def __init__(self, max_message: int = MAX_MESSAGE) -> None:
        self.max_message = max_message
        self._req: int | None = None
        self._next = 0
        self._parts: list[bytes] = []
        self._size = 0
        self._dropping: int | None = None  # rest of a refused message: dropped without more errors

    @property
    def assembling(self) -> int | None:
        """The req being assembled, or None."""
        return self._req

    def reset(self) -> None:
        """Drop any partial message."""
        self._req, self._next, self._parts, self._size = None, 0, [], 0

    def feed(self, chunk: bytes) -> Assembled:
        """Take one written value; returns what it completed (or an error for its req)."""
        got = self._feed(chunk)
        if got.error is not None:
            self._dropping = got.req
        return got

    def _feed(self, chunk: bytes) -> Assembled:
        if len(chunk) < HEADER:
            req = chunk[0] if chunk else 0
            self.reset()
            return Assembled(req, status=400, error="bad_chunk", detail="a chunk needs 3 header bytes")
        req, idx, flags = chunk[0], chunk[1], chunk[2]
        if flags & ~LAST:
            self.reset()
            return Assembled(req, status=400, error="bad_chunk", detail=f"unknown flag bits {flags:#04x}")
        if self._req is None:
            if idx != 0 and req == self._dropping:
                return Assembled(req)  # the tail of a message already answered with an error
            self._dropping = None
            if idx != 0:
                return Assembled(req, status=400, error="bad_chunk", detail=f"chunk {idx} without chunk 0")
            self._req = req
        elif req != self._req:
            self.reset()
            return Assembled(req, status=400, error="bad_chunk", detail="a chunk of another request mid-message")
        elif idx != self._next:
            due = self._next
            self.reset()
            return Assembled(req, status=400, error="bad_chunk", detail=f"chunk {idx} where {due} was due")
        self._size += len(chunk) - HEADER
        if self._size > self.max_message:
            self.reset()
            return Assembled(req, status=413, error="too_large", detail=f"messages are at most {self.max_message} B")
        self._parts.append(chunk[HEADER:])
        self._next = idx + 1
        if flags & LAST:
            message = b"".join(self._parts)
            self.reset()
            return Assembled(req, message=message)
        if self._next >= MAX_CHUNKS:
            self.reset()
            return Assembled(req, status=413, error="too_large", detail=f"more than {MAX_CHUNKS} chunks")
        return Assembled(req)
