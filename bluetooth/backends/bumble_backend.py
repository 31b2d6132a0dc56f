"""bumble backend: a software BLE host, on a virtual link (tests) or any HCI transport (`usb:0`, `tcp-client:...`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from bumble.core import UUID
from bumble.device import Connection, Device
from bumble.gatt import Characteristic, CharacteristicValue, Service
from bumble.hci import Address

from bluetooth.gatt import Advert, Prop, ServiceDef

from .base import DEFAULT_MTU, Backend, Handler

log = logging.getLogger("ohm.ble.bumble")


class BumbleBackend(Backend):
    """GATT server on a bumble Device; `link` (a bumble LocalLink) or `transport` (HCI spec) says where."""

    name = "bumble"
    cycles_adverts = True

    def __init__(
        self,
        transport: str | None = None,
        *,
        link: Any = None,
        address: str = "F0:F0:F0:F0:F0:F0",
        advertising_interval: float = 100.0,
    ) -> None:
        if (transport is None) == (link is None):
            raise ValueError("bumble backend needs either an HCI transport spec or a LocalLink")
        self.transport_spec = transport
        self.link = link
        self.address = address
        self.advertising_interval = advertising_interval
        self.device: Device | None = None
        self._transport: Any = None
        self._controller: Any = None
        self._chars: dict[str, Characteristic] = {}
        self._conns: dict[str, Connection] = {}
        self._handler: Handler | None = None

    async def _open_device(self) -> Device:
        if self.link is not None:
            from bumble.controller import Controller
            from bumble.host import Host
            from bumble.transport.common import AsyncPipeSink

            self._controller = Controller("ohm-gateway", link=self.link, public_address=self.address)
            host = Host(self._controller, AsyncPipeSink(self._controller))
            return Device(name="Ohm", address=Address(self.address), host=host)
        from bumble.transport import open_transport

        self._transport = await open_transport(self.transport_spec or "")
        return Device.with_hci("Ohm", Address(self.address), self._transport.source, self._transport.sink)

    async def start(self, services: tuple[ServiceDef, ...], advert: Advert, handler: Handler) -> None:
        """Build the GATT database, power on and advertise."""
        self._handler = handler
        device = self.device = await self._open_device()
        for service in services:
            chars = []
            for spec in service.chars:
                char = self._characteristic(spec.uuid, spec.props)
                self._chars[spec.uuid] = char
                chars.append(char)
            device.add_service(Service(service.uuid, chars))
        device.on("connection", self._on_connection)
        await device.power_on()
        await self.set_advert(advert)

    def _characteristic(self, uuid: str, props: Prop) -> Characteristic:
        handler = self._handler
        assert handler is not None

        def read(connection: Connection) -> bytes:
            return handler.on_read(self._key(connection), uuid)

        def write(connection: Connection, value: bytes) -> None:
            handler.on_write(self._key(connection), uuid, bytes(value))

        perms = 0
        if props & Prop.READ or props & Prop.NOTIFY:
            perms |= Characteristic.READABLE
        if props & (Prop.WRITE | Prop.WRITE_NO_RESPONSE):
            perms |= Characteristic.WRITEABLE
        value = CharacteristicValue(
            read=read if props & Prop.READ else (lambda _c: b""),
            write=write if props & (Prop.WRITE | Prop.WRITE_NO_RESPONSE) else None,
        )
        return Characteristic(UUID(uuid), Characteristic.Properties(int(props)), perms, value)

    @staticmethod
    def _key(connection: Connection) -> str:
        return f"bumble:{connection.handle}"

    def _on_connection(self, connection: Connection) -> None:
        key = self._key(connection)
        self._conns[key] = connection
        handler = self._handler
        assert handler is not None

        def on_mtu() -> None:
            handler.on_mtu(key, connection.att_mtu)

        def on_disconnection(_reason: int) -> None:
            self._conns.pop(key, None)
            handler.on_disconnect(key)

        connection.on("connection_att_mtu_update", on_mtu)
        connection.on("disconnection", on_disconnection)
        handler.on_connect(key)

    async def set_advert(self, advert: Advert) -> None:
        """New advertising data: in place on a running advertising set (no gap a central could connect into),
        else (re)start advertising."""
        if self.device is None:
            return
        running = self.device.legacy_advertising_set
        if running is not None and running.enabled:
            await running.set_advertising_data(advert.payload())
            await running.set_scan_response_data(advert.scan_response())
            return
        if advert.name:
            self.device.name = advert.name
        await self.device.start_advertising(
            advertising_data=advert.payload(),
            scan_response_data=advert.scan_response(),
            auto_restart=True,
            advertising_interval_min=self.advertising_interval,
            advertising_interval_max=self.advertising_interval,
        )

    async def notify(self, conn: str | None, char: str, value: bytes) -> None:
        """Notify one connection or every subscriber."""
        if self.device is None:
            return
        attribute = self._chars[char]
        if conn is None:
            await self.device.notify_subscribers(attribute, value)
            return
        connection = self._conns.get(conn)
        if connection is not None:
            await self.device.notify_subscriber(connection, attribute, value)

    def mtu(self, conn: str) -> int:
        """The connection's ATT MTU."""
        connection = self._conns.get(conn)
        return connection.att_mtu if connection is not None else DEFAULT_MTU

    async def stop(self) -> None:
        """Stop advertising, disconnect everyone and close the transport."""
        device, self.device = self.device, None
        if device is not None:
            with contextlib.suppress(Exception):
                await device.stop_advertising()
            for connection in list(self._conns.values()):
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(connection.disconnect(), 2)
            with contextlib.suppress(Exception):
                await device.power_off()
        if self._controller is not None and self.link is not None:
            with contextlib.suppress(Exception):
                self.link.remove_controller(self._controller)
        if self._transport is not None:
            with contextlib.suppress(Exception):
                await self._transport.close()
