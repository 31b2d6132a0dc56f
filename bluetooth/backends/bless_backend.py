"""bless backend: a GATT application and an LE advertisement registered with BlueZ over D-Bus (the Pi).

bless 0.3.0 passes neither the central's device nor the MTU to read/write callbacks, so this backend
sees one logical connection ("bluez"): BlueZ's Device1.Connected changes start and end it, and the
MTU is the configured `mtu` (phones negotiate 185 or more with BlueZ; see docs/ble.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from bluetooth.gatt import Advert, Prop, ServiceDef

from .base import Backend, Handler

log = logging.getLogger("ohm.ble.bless")
CONN = "bluez"
DEVICE_IFACE = "org.bluez.Device1"


def _uuid16(uuid16: int) -> str:
    return f"0000{uuid16:04x}-0000-1000-8000-00805f9b34fb"


class BlessBackend(Backend):
    """GATT server through bless on BlueZ (system D-Bus, or DBUS_SYSTEM_BUS_ADDRESS in tests)."""

    name = "bless"

    def __init__(self, adapter: str = "hci0", mtu: int = 185) -> None:
        self.adapter = adapter
        self._mtu = mtu
        self.server: Any = None
        self._handler: Handler | None = None
        self._service_of: dict[str, str] = {}
        self._advert: Any = None
        self._adverts = 0
        self._connected: set[str] = set()

    async def start(self, services: tuple[ServiceDef, ...], advert: Advert, handler: Handler) -> None:
        """Register the GATT application, then our own advertisement (bless's has no service data)."""
        from bless import BlessServer, GATTAttributePermissions, GATTCharacteristicProperties

        self._handler = handler
        server = self.server = BlessServer(name=advert.name, loop=asyncio.get_running_loop(), adapter=self.adapter)
        server.read_request_func = self._read
        server.write_request_func = self._write
        for service in services:
            await server.add_new_service(service.uuid)
            for char in service.chars:
                self._service_of[char.uuid] = service.uuid
                perms = GATTAttributePermissions(0)
                if char.props & (Prop.READ | Prop.NOTIFY):
                    perms |= GATTAttributePermissions.readable
                if char.props & (Prop.WRITE | Prop.WRITE_NO_RESPONSE):
                    perms |= GATTAttributePermissions.writeable
                props = GATTCharacteristicProperties(int(char.props))
                await server.add_new_characteristic(service.uuid, char.uuid, props, None, perms)
        await server.setup_task
        await self._watch_connections(server.bus)
        server.bus.export(server.app.path, server.app)
        await server.app.register(server.adapter)
        await self.set_advert(advert)
        handler.on_connect(CONN)  # the logical connection exists from the start (see the module docstring)

    def _read(self, characteristic: Any, **_options: Any) -> bytearray:
        assert self._handler is not None
        return bytearray(self._handler.on_read(CONN, str(characteristic.uuid).lower()))

    def _write(self, characteristic: Any, value: Any, **_options: Any) -> None:
        assert self._handler is not None
        self._handler.on_write(CONN, str(characteristic.uuid).lower(), bytes(value))

    async def _watch_connections(self, bus: Any) -> None:
        from dbus_next import Message, MessageType

        rule = (
            "type='signal',interface='org.freedesktop.DBus.Properties',member='PropertiesChanged',"
            f"arg0='{DEVICE_IFACE}'"
        )
        await bus.call(
            Message(
                destination="org.freedesktop.DBus",
                path="/org/freedesktop/DBus",
                interface="org.freedesktop.DBus",
                member="AddMatch",
                signature="s",
                body=[rule],
            )
        )

        def on_message(msg: Any) -> None:
            if msg.message_type != MessageType.SIGNAL or msg.member != "PropertiesChanged" or not msg.body:
                return
            if msg.body[0] != DEVICE_IFACE or "Connected" not in msg.body[1]:
                return
            handler = self._handler
            assert handler is not None
            if msg.body[1]["Connected"].value:
                self._connected.add(msg.path)
                handler.on_disconnect(CONN)  # a new central: start from a clean state
                handler.on_connect(CONN)
            elif msg.path in self._connected:
                self._connected.discard(msg.path)
                handler.on_disconnect(CONN)
                handler.on_connect(CONN)

        bus.add_message_handler(on_message)

    async def set_advert(self, advert: Advert) -> None:
        """Replace the LE advertisement: name, Improv service UUID and service data 4677."""
        from bless.backends.bluezdbus.dbus.advertisement import BlueZLEAdvertisement, Type
        from dbus_next import Variant

        server = self.server
        iface = server.adapter.get_interface("org.bluez.LEAdvertisingManager1")
        self._adverts += 1
        adv = BlueZLEAdvertisement(Type.PERIPHERAL, self._adverts, server.app)
        adv._local_name = advert.name
        adv._service_uuids = list(dict.fromkeys(advert.uuids + advert.scan_uuids))
        adv._service_data = {_uuid16(k): Variant("ay", bytes(v)) for k, v in advert.service_data.items()}
        server.bus.export(adv.path, adv)
        await iface.call_register_advertisement(adv.path, {})
        # The new one is on air before the old one goes: no gap in advertising.
        old, self._advert = self._advert, adv
        if old is not None:
            with contextlib.suppress(Exception):
                await iface.call_unregister_advertisement(old.path)
            server.bus.unexport(old.path)

    async def notify(self, conn: str | None, char: str, value: bytes) -> None:
        """Set the value and emit PropertiesChanged: BlueZ notifies subscribed centrals."""
        if self.server is None:
            return
        characteristic = self.server.get_characteristic(char)
        characteristic.value = bytearray(value)
        self.server.update_value(self._service_of[char], char)

    def mtu(self, conn: str) -> int:
        """The configured MTU (bless hides the negotiated one)."""
        return self._mtu

    async def stop(self) -> None:
        """Unregister the advertisement and the application, close the bus."""
        server, self.server = self.server, None
        if server is None:
            return
        with contextlib.suppress(Exception):
            iface = server.adapter.get_interface("org.bluez.LEAdvertisingManager1")
            if self._advert is not None:
                await iface.call_unregister_advertisement(self._advert.path)
        with contextlib.suppress(Exception):
            await server.app.unregister(server.adapter)
        with contextlib.suppress(Exception):
            server.bus.disconnect()
