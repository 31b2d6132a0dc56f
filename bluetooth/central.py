"""A bumble central speaking both protocols: for tests, the benchmark and trying a gateway from a laptop."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from bumble.core import UUID, AdvertisingData
from bumble.device import Advertisement, Connection, Device, Peer

from . import improv as iv
from .chunks import LAST, split
from .gatt import (
    IMPROV_CAPABILITIES,
    IMPROV_ERROR,
    IMPROV_RESULT,
    IMPROV_RPC,
    IMPROV_STATE,
    NAME_PREFIX,
    OHM_INFO,
    OHM_RX,
    OHM_TX,
)
from .session import CentralSession


class ChannelError(Exception):
    """The gateway answered an error (status >= 400) where a result was expected."""

    def __init__(self, reply: dict[str, Any]) -> None:
        super().__init__(f"{reply.get('status')} {reply.get('error')}: {reply.get('detail', '')}")
        self.reply = reply


def has_name_prefix(prefix: str) -> Callable[[Advertisement], bool]:
    """Match advertisements whose local name starts with `prefix` (how clients find a gateway)."""

    def match(adv: Advertisement) -> bool:
        name = adv.data.get(AdvertisingData.COMPLETE_LOCAL_NAME)
        return isinstance(name, str) and name.startswith(prefix)

    return match


async def scan(
    device: Device,
    prefix: str = NAME_PREFIX,
    timeout: float = 10.0,
    match: Callable[[Advertisement], bool] | None = None,
) -> Advertisement:
    """The first advertisement whose local name starts with `prefix` (or that `match` accepts)."""
    found: asyncio.Future[Advertisement] = asyncio.get_running_loop().create_future()
    accept = match or has_name_prefix(prefix)

    def on_advertisement(adv: Advertisement) -> None:
        if accept(adv) and not found.done():
            found.set_result(adv)

    device.on("advertisement", on_advertisement)
    await device.start_scanning(filter_duplicates=False)
    try:
        return await asyncio.wait_for(found, timeout)
    finally:
        device.remove_listener("advertisement", on_advertisement)
        await device.stop_scanning()


class Central:
    """One connection to a gateway: raw chunk I/O, the Ohm channel and Improv."""

    def __init__(self, connection: Connection, peer: Peer) -> None:
        self.connection = connection
        self.peer = peer
        self.mtu = 23
        self.req = 0
        self.session: CentralSession | None = None
        self._tx: asyncio.Queue[bytes] = asyncio.Queue()
        self._improv: asyncio.Queue[bytes] = asyncio.Queue()
        self.states: list[int] = []
        self.chars: dict[str, Any] = {}

    @classmethod
    async def connect(
        cls, device: Device, address: Any, mtu: int = 23, ready: Callable[[], bool] | None = None
    ) -> Central:
        """Connect, negotiate `mtu`, discover both services and subscribe to tx and the Improv values.

        `ready()` (if given) is awaited before the first ATT request: on bumble's virtual link the central can
        see its connection before the peripheral's controller does, and a request sent then is lost.
        """
        connection = await device.connect(address)
        for _ in range(500):
            if ready is None or ready():
                break
            await asyncio.sleep(0.01)
        peer = Peer(connection)
        self = cls(connection, peer)
        if mtu != 23:
            self.mtu = await peer.request_mtu(mtu)
        await peer.discover_services()
        await peer.discover_characteristics()
        for uuid in (
            OHM_RX,
            OHM_TX,
            OHM_INFO,
            IMPROV_RPC,
            IMPROV_RESULT,
            IMPROV_STATE,
            IMPROV_ERROR,
            IMPROV_CAPABILITIES,
        ):
            found = peer.get_characteristics_by_uuid(UUID(uuid))
            if found:
                self.chars[uuid] = found[0]
        await peer.subscribe(self.chars[OHM_TX], self._tx.put_nowait)
        await peer.subscribe(self.chars[IMPROV_RESULT], self._improv.put_nowait)
        await peer.subscribe(self.chars[IMPROV_STATE], lambda v: self.states.append(v[0]))
        return self

    async def disconnect(self) -> None:
        """Close the connection."""
        await self.connection.disconnect()

    # ---- raw ---------------------------------------------------------------------------------

    async def write(self, value: bytes, char: str = OHM_RX, with_response: bool = True) -> None:
        """Write one value."""
        await self.peer.write_value(self.chars[char], value, with_response=with_response)

    async def read(self, char: str) -> bytes:
        """Read one value."""
        return bytes(await self.peer.read_value(self.chars[char]))

    async def receive(self, timeout: float = 10.0) -> tuple[int, dict[str, Any]]:
        """The next whole message from tx: (req, object)."""
        parts, req = [], None
        while True:
            chunk = await asyncio.wait_for(self._tx.get(), timeout)
            if req is None:
                req = chunk[0]
            parts.append(chunk[3:])
            if chunk[2] & LAST:
                return req, json.loads(b"".join(parts))

    async def send(self, obj: dict[str, Any], req: int | None = None, with_response: bool = True) -> int:
        """Chunk and write one message; returns its req."""
        if req is None:
            self.req = (self.req + 1) & 0xFF
            req = self.req
        for chunk in split(req, json.dumps(obj).encode(), self.mtu):
            await self.write(chunk, with_response=with_response)
        return req

    async def exchange(self, obj: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
        """Send a plaintext message and wait for the answer to it."""
        req = await self.send(obj)
        got_req, reply = await self.receive(timeout)
        assert got_req == req, f"answer to {got_req}, expected {req}"
        return reply

    # ---- Ohm channel --------------------------------------------------------------------------

    async def handshake(self, pop: str) -> None:
        """hello + confirm; raises ChannelError when refused."""
        session = CentralSession()
        reply = await self.exchange(session.hello())
        if "status" in reply:
            raise ChannelError(reply)
        req = (self.req + 1) & 0xFF
        await self.send(session.confirm(req, reply, pop), req=req)
        self.req = req
        _, answer = await self.receive()
        if "box" not in answer:
            raise ChannelError(answer)
        assert session.box is not None
        if session.box.open(req, answer["box"]) != {"op": "ready"}:
            raise ChannelError({"status": 0, "error": "no ready"})
        self.session = session

    async def call(self, request: dict[str, Any], timeout: float = 15.0) -> dict[str, Any]:
        """A sealed request; returns the opened answer (plaintext errors are returned as they are)."""
        assert self.session is not None and self.session.box is not None, "handshake first"
        req = (self.req + 1) & 0xFF
        await self.send(self.session.box.seal(req, request), req=req)
        self.req = req
        got_req, answer = await self.receive(timeout)
        assert got_req == req
        return self.session.box.open(req, answer["box"]) if "box" in answer else answer

    async def rest(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        """A REST call through the gateway."""
        request: dict[str, Any] = {"method": method, "path": path}
        if body is not None:
            request["body"] = body
        return await self.call(request)

    # ---- Improv ---------------------------------------------------------------------------------

    async def improv_write(self, command: int, data: bytes = b"") -> None:
        """Send an RPC frame in writes of at most MTU-3 bytes."""
        frame = iv.frame(command, data)
        step = self.mtu - 3
        for i in range(0, len(frame), step):
            await self.write(frame[i : i + step], IMPROV_RPC)

    async def improv(self, command: int, data: bytes = b"", timeout: float = 10.0) -> list[str]:
        """Send an RPC and wait for its result strings."""
        await self.improv_write(command, data)
        raw = await asyncio.wait_for(self._improv.get(), timeout)
        if len(raw) < 3 or raw[1] != len(raw) - 3:
            # A notification holds at most MTU-3 bytes; the gateway cut a longer frame: read it whole.
            raw = await self.read(IMPROV_RESULT)
        if len(raw) < 3 or iv.checksum(raw[:-1]) != raw[-1] or raw[0] != command or raw[1] != len(raw) - 3:
            raise ValueError(f"bad RPC result {raw.hex()}")
        return iv.decode_strings(raw[2:-1])
