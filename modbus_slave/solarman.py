"""A Solarman V5 logger stick: V5 frames over TCP wrapping Modbus RTU, bridged to a simulator.

Like a real stick it unwraps the RTU frame from each V5 request, asks the inverter behind it
(here: a Simulator's Modbus TCP port) and wraps the RTU answer back into a V5 response.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct

from .server import Simulator, _LoopThread

START, END = 0xA5, 0x15
REQUEST, RESPONSE = 0x4510, 0x1510
HEADER = 11  # start, length, control code, sequence, logger serial
REQ_PAYLOAD_HEAD = 15  # frame type, sensor type, delivery/power-on/offset times
RESP_PAYLOAD_HEAD = 14  # frame type, status, the three times


def crc16(data: bytes) -> int:
    """Modbus RTU CRC-16 (polynomial 0xA001, initial 0xFFFF)."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def checksum(frame: bytes) -> int:
    """V5 checksum: sum of every byte between the start byte and the checksum, modulo 256."""
    return sum(frame[1:-2]) & 0xFF


def wrap_response(request: bytes, rtu: bytes) -> bytes:
    """A V5 response echoing the request's sequence number and logger serial around an RTU frame."""
    payload = bytes([0x02, 0x01]) + bytes(12) + rtu
    frame = bytearray([START]) + struct.pack("<HH", len(payload), RESPONSE) + request[5:7] + request[7:11]
    frame += payload + b"\0" + bytes([END])
    frame[-2] = checksum(frame)
    return bytes(frame)


class SolarmanLogger:
    """Serve V5 on (host, port) for the simulator `sim` (which must be serving TCP)."""

    def __init__(self, sim: Simulator, serial: int = 2712345678, host: str = "127.0.0.1", port: int = 0) -> None:
        if not host.startswith("127."):
            raise ValueError("the simulator binds loopback addresses only")
        self.sim = sim
        self.serial = serial
        self.host = host
        self.port = port
        self._server: asyncio.base_events.Server | None = None

    def start(self) -> SolarmanLogger:
        """Start serving; returns self with .port filled in."""
        _LoopThread.acquire()
        try:
            self._server = _LoopThread.run(asyncio.start_server(self._serve, self.host, self.port))
        except BaseException:
            _LoopThread.release()
            raise
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            server, self._server = self._server, None

            async def close() -> None:
                server.close()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(server.wait_closed(), 2)

            _LoopThread.run(close())
            _LoopThread.release()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_r = up_w = None
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.sim.port)
            tid = 0
            while True:
                head = await reader.readexactly(3)
                if head[0] != START:
                    break
                (length,) = struct.unpack("<H", head[1:3])
                rest = await reader.readexactly(length + HEADER - 3 + 2)
                frame = head + rest
                serial = struct.unpack("<I", frame[7:11])[0]
                if frame[-1] != END or checksum(frame) != frame[-2] or serial != self.serial:
                    continue  # a real stick ignores frames for another serial or with a bad checksum
                rtu = frame[HEADER + REQ_PAYLOAD_HEAD : -2]
                if len(rtu) < 4 or crc16(rtu[:-2]) != int.from_bytes(rtu[-2:], "little"):
                    continue
                unit, pdu = rtu[0], rtu[1:-2]
                tid = (tid + 1) & 0xFFFF
                up_w.write(struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit) + pdu)
                rhead = await asyncio.wait_for(up_r.readexactly(7), 5)
                rpdu = await up_r.readexactly(int.from_bytes(rhead[4:6], "big") - 1)
                answer = bytes([unit]) + rpdu
                answer += crc16(answer).to_bytes(2, "little")
                writer.write(wrap_response(frame, answer))
                await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            writer.close()
            if up_w is not None:
                up_w.close()
