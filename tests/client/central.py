"""The Python half of the Web Bluetooth shim: a bumble central that does what the page asks.

Each call from webbluetooth_shim.js arrives as JSON in `handle`; replies are JSON `{"value": ...}` or
`{"error": "<DOMException name>", "message": ...}` as Chrome would raise. Every byte written and notified is kept
in `air` so a test can check what crossed the link.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from bumble.core import UUID, AdvertisingData
from bumble.device import Advertisement, Device, Peer

Notify = Callable[[str, list[Any]], Awaitable[Any]]


class Central:
    """Scans, connects, discovers, reads, writes and subscribes for the page; MTU as a phone would negotiate."""

    def __init__(
        self,
        device: Device,
        mtu: int = 185,
        scan_timeout: float = 5.0,
        ble_loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.device = device
        self.ble_loop = ble_loop  # the loop bumble's link lives on, when it is not the page's (a service's thread)
        self.mtu = mtu
        self.scan_timeout = scan_timeout
        self.cancel_chooser = False  # the person closes the chooser without picking
        self.page_call: Notify | None = None  # page.evaluate, set by the test
        self.air: list[tuple[str, bytes]] = []  # ("write"|"notify", bytes)
        self.peers: dict[str, Peer] = {}
        self.addresses: dict[str, Any] = {}
        self.objects: dict[str, Any] = {}
        self.writes_over: list[int] = []
        self._events: asyncio.Queue[tuple[str, list[Any]]] = asyncio.Queue()
        self._pump: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        """Power on and start the pump that delivers notifications to the page in order."""
        self._loop = asyncio.get_running_loop()
        await self.on_ble(self.device.power_on())
        self._pump = self._loop.create_task(self._deliver())

    async def stop(self) -> None:
        """Disconnect every peer and stop the pump."""

        async def drop() -> None:
            for peer in list(self.peers.values()):
                try:
                    await peer.connection.disconnect()
                except Exception:  # noqa: BLE001 - already gone is fine at teardown
                    pass

        await self.on_ble(drop())
        if self._pump:
            self._pump.cancel()

    async def drop_links(self) -> None:
        """Lose every connection (the phone walks away); the central stays usable."""

        async def drop() -> None:
            for peer in list(self.peers.values()):
                await peer.connection.disconnect()

        await self.on_ble(drop())

    async def on_ble(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Run `coro` on bumble's loop (this one, or the service's thread) and await its result here."""
        if self.ble_loop is None:
            return await coro
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.ble_loop))

    async def handle(self, text: str) -> str:
        """One shim call -> JSON reply."""
        call = json.loads(text)
        try:
            value = await self.on_ble(getattr(self, "op_" + call.pop("op"))(**call))
        except DomError as err:
            return json.dumps({"error": err.name, "message": str(err)})
        except Exception as err:  # noqa: BLE001 - anything the stack raises is a NetworkError to the page
            return json.dumps({"error": "NetworkError", "message": f"{type(err).__name__}: {err}"})
        return json.dumps({"value": value})

    # ---- operations ------------------------------------------------------------------------------------------

    async def op_requestDevice(self, options: dict[str, Any]) -> dict[str, str]:
        if self.cancel_chooser:
            raise DomError("NotFoundError", "User cancelled the requestDevice() chooser.")
        prefixes = [f["namePrefix"] for f in options.get("filters", []) if "namePrefix" in f]
        found: asyncio.Future[Advertisement] = asyncio.get_running_loop().create_future()

        def seen(adv: Advertisement) -> None:
            name = adv.data.get(AdvertisingData.COMPLETE_LOCAL_NAME) or adv.data.get(
                AdvertisingData.SHORTENED_LOCAL_NAME
            )
            if isinstance(name, bytes):
                name = name.decode(errors="replace")
            if name and any(name.startswith(p) for p in prefixes) and not found.done():
                found.set_result(adv)

        self.device.on("advertisement", seen)
        await self.device.start_scanning(filter_duplicates=True)
        try:
            adv = await asyncio.wait_for(found, self.scan_timeout)
        except TimeoutError:
            raise DomError("NotFoundError", "User cancelled the requestDevice() chooser.") from None
        finally:
            self.device.remove_listener("advertisement", seen)
            await self.device.stop_scanning()
        name = adv.data.get(AdvertisingData.COMPLETE_LOCAL_NAME)
        name = name.decode() if isinstance(name, bytes) else str(name)
        dev_id = f"dev{len(self.addresses) + 1}"
        self.addresses[dev_id] = adv.address
        return {"id": dev_id, "name": name}

    async def op_connect(self, device: str) -> None:
        connection = await self.device.connect(self.addresses[device])
        peer = Peer(connection)
        await peer.request_mtu(self.mtu)
        self.peers[device] = peer
        connection.on("disconnection", lambda *_: self._gone(device))

    async def op_disconnect(self, device: str) -> None:
        peer = self.peers.get(device)
        if peer is not None:
            await peer.connection.disconnect()

    async def op_service(self, device: str, uuid: str) -> str:
        peer = self._peer(device)
        services = await peer.discover_services([UUID(uuid)])
        if not services:
            raise DomError("NotFoundError", f"No Services matching UUID {uuid} found in Device.")
        return self._keep((device, services[0]))

    async def op_characteristic(self, service: str, uuid: str) -> str:
        device, svc = self.objects[service]
        chars = await svc.discover_characteristics([UUID(uuid)])
        if not chars:
            raise DomError("NotFoundError", f"No Characteristics matching UUID {uuid} found in Service.")
        await chars[0].discover_descriptors()
        return self._keep((device, chars[0]))

    async def op_read(self, char: str) -> str:
        device, c = self.objects[char]
        return base64.b64encode(bytes(await self._peer(device).read_value(c))).decode()

    async def op_write(self, char: str, data: str, response: bool) -> None:
        device, c = self.objects[char]
        raw = base64.b64decode(data)
        peer = self._peer(device)
        if len(raw) > peer.connection.att_mtu - 3:
            self.writes_over.append(len(raw))  # a real phone would need a long write here
        self.air.append(("write", raw))
        await peer.write_value(c, raw, with_response=response)

    async def op_notify(self, char: str) -> None:
        device, c = self.objects[char]

        def on_value(value: bytes) -> None:
            self.air.append(("notify", bytes(value)))
            self._post("__ohmNotify", [char, base64.b64encode(bytes(value)).decode()])

        await self._peer(device).subscribe(c, on_value)

    # ---- internals -------------------------------------------------------------------------------------------

    def _peer(self, device: str) -> Peer:
        peer = self.peers.get(device)
        if peer is None:
            raise DomError("NetworkError", "GATT Server is disconnected. Cannot perform GATT operations.")
        return peer

    def _keep(self, obj: Any) -> str:
        key = f"o{len(self.objects) + 1}"
        self.objects[key] = obj
        return key

    def _gone(self, device: str) -> None:
        self.peers.pop(device, None)
        self._post("__ohmDisconnected", [device])

    def _post(self, fn: str, args: list[Any]) -> None:
        # Called on bumble's loop; the pump lives on the page's loop.
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._events.put_nowait, (fn, args))

    async def _deliver(self) -> None:
        while True:
            fn, args = await self._events.get()
            if self.page_call is None:
                continue
            try:
                await self.page_call(f"(a) => window.{fn}(...a)", args)
            except Exception:  # noqa: BLE001 - the page may be closing; later events still go
                continue


class DomError(Exception):
    """An error the shim raises in the page as a DOMException of this name."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name
