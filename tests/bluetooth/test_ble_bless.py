"""The bless backend against a BlueZ mock (python-dbusmock, custom template with GattManager1) on a private bus.

The test plays BlueZ's part towards the service: it calls ReadValue, WriteValue and StartNotify on the
registered application over real D-Bus and collects notifications from PropertiesChanged signals.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bluetooth import improv as iv
from bluetooth.backends import create
from bluetooth.chunks import LAST, split
from bluetooth.config import load as load_ble
from bluetooth.gatt import IMPROV_RESULT, IMPROV_RPC, OHM_INFO, OHM_RX, OHM_TX
from bluetooth.service import BleService
from bluetooth.session import CentralSession
from tests.bluetooth.ble_support import Server
from tests.support import wait_for

pytestmark = pytest.mark.integration
TEMPLATE = Path(__file__).with_name("bluez_gatt_template.py")


@pytest.fixture
def bluez() -> Iterator[str]:
    if shutil.which("dbus-daemon") is None:
        if os.environ.get("CI"):
            pytest.fail("dbus-daemon is missing; `make sysdeps` installs dbus")
        pytest.skip("dbus-daemon is not installed (apt-get install dbus)")
    from dbusmock.testcase import BusType, DBusTestCase, PrivateDBus

    saved = os.environ.get("DBUS_SYSTEM_BUS_ADDRESS")
    bus = PrivateDBus(BusType.SYSTEM)
    mock = None
    try:
        bus.start()  # sets DBUS_SYSTEM_BUS_ADDRESS for this process (restored below)
        mock = subprocess.Popen(
            [sys.executable, "-m", "dbusmock", "--system", "--template", str(TEMPLATE)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        DBusTestCase.wait_for_bus_object("org.bluez", "/org/bluez/hci0", system_bus=True)
        yield bus.address
    finally:
        if mock is not None:
            mock.terminate()
            try:
                mock.wait(5)
            except subprocess.TimeoutExpired:
                mock.kill()
                mock.wait(5)
        bus.stop()
        if saved is None:
            os.environ.pop("DBUS_SYSTEM_BUS_ADDRESS", None)
        else:
            os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = saved


@pytest.fixture
def bless_service(bluez: str, server: Server) -> Iterator[BleService]:
    settings = load_ble(env={}, data_dir=server.gateway.data_dir, server_url=server.url, poll_interval=0.2)
    service = BleService(settings, create("bless", adapter="hci0"))
    try:
        service.start()
        wait_for(lambda: service.window.state.open)
        yield service
    finally:
        service.stop()


class FakeBlueZ:
    """BlueZ's side of the GATT application: method calls to the service, notifications from signals."""

    def __init__(self, address: str, service: BleService) -> None:
        self.address = address
        self.service = service
        self.bus: Any = None
        self.notes: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        self.paths = {
            uuid: service.backend.server.get_characteristic(uuid).gatt.path  # type: ignore[attr-defined]
            for uuid in (OHM_RX, OHM_TX, OHM_INFO, IMPROV_RPC, IMPROV_RESULT)
        }
        self.dest = service.backend.server.bus.unique_name  # type: ignore[attr-defined]

    async def open(self) -> None:
        from dbus_next import BusType
        from dbus_next.aio import MessageBus

        self.bus = await MessageBus(bus_address=self.address, bus_type=BusType.SYSTEM).connect()
        await self._call(
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "AddMatch",
            "s",
            [f"type='signal',sender='{self.dest}',member='PropertiesChanged'"],
        )
        by_path = {p: u for u, p in self.paths.items()}

        def on_message(msg: Any) -> None:
            if msg.member == "PropertiesChanged" and msg.path in by_path and "Value" in msg.body[1]:
                self.notes.put_nowait((by_path[msg.path], bytes(msg.body[1]["Value"].value)))

        self.bus.add_message_handler(on_message)

    async def _call(self, dest: str, path: str, iface: str, member: str, sig: str, body: list[Any]) -> Any:
        from dbus_next import Message, MessageType

        reply = await self.bus.call(
            Message(destination=dest, path=path, interface=iface, member=member, signature=sig, body=body)
        )
        assert reply.message_type == MessageType.METHOD_RETURN, reply.body
        return reply.body

    async def char(self, uuid: str, member: str, sig: str = "", body: list[Any] | None = None) -> Any:
        return await self._call(self.dest, self.paths[uuid], "org.bluez.GattCharacteristic1", member, sig, body or [])

    async def write(self, uuid: str, value: bytes) -> None:
        await self.char(uuid, "WriteValue", "aya{sv}", [value, {}])

    async def read(self, uuid: str) -> bytes:
        return bytes((await self.char(uuid, "ReadValue", "a{sv}", [{}]))[0])

    async def message(self, req: int, obj: dict[str, Any], mtu: int) -> dict[str, Any]:
        for chunk in split(req, json.dumps(obj).encode(), mtu):
            await self.write(OHM_RX, chunk)
        parts = []
        while True:
            uuid, value = await asyncio.wait_for(self.notes.get(), 10)
            if uuid != OHM_TX:
                continue
            assert value[0] == req and len(value) <= mtu - 3
            parts.append(value[3:])
            if value[2] & LAST:
                return json.loads(b"".join(parts))


def test_bless_backend_registers_and_serves_both_protocols(bless_service: BleService, bluez: str) -> None:
    service = bless_service

    async def scenario() -> None:
        bz = FakeBlueZ(bluez, service)
        await bz.open()
        # Registered with "BlueZ": the application and an advertisement with name and Improv service data.
        adapter = await bz._call(
            "org.bluez",
            "/org/bluez/hci0",
            "org.freedesktop.DBus.Properties",
            "Get",
            "ss",
            ["org.bluez.LEAdvertisingManager1", "ActiveInstances"],
        )
        assert adapter[0].value >= 1  # 2 for a moment while a new one replaces the old
        adv = service.backend._advert  # type: ignore[attr-defined]
        props = (
            await bz._call(
                bz.dest, adv.path, "org.freedesktop.DBus.Properties", "GetAll", "s", ["org.bluez.LEAdvertisement1"]
            )
        )[0]
        assert props["LocalName"].value == service.name
        data = props["ServiceData"].value["00004677-0000-1000-8000-00805f9b34fb"].value
        assert bytes(data) == bytes([iv.State.AUTHORIZED, iv.CAPABILITIES, 0, 0, 0, 0])
        # Reads, notifications and the whole Ohm channel over D-Bus calls.
        info = json.loads(await bz.read(OHM_INFO))
        assert info["name"] == service.name and info["window"] is True
        await bz.char(OHM_TX, "StartNotify")
        central = CentralSession()
        hello = await bz.message(1, central.hello(), 185)
        ready = await bz.message(2, central.confirm(2, hello, service.pop), 185)
        assert central.box is not None and central.box.open(2, ready["box"]) == {"op": "ready"}
        answer = await bz.message(3, central.box.seal(3, {"method": "GET", "path": "/api/state"}), 185)
        reply = central.box.open(3, answer["box"])
        assert reply["status"] == 200 and "engine" in reply["body"]
        # Improv device info through the RPC characteristic.
        await bz.char(IMPROV_RESULT, "StartNotify")
        await bz.write(IMPROV_RPC, iv.frame(iv.Command.DEVICE_INFO, b""))
        result = await bz.read(IMPROV_RESULT)
        for _ in range(50):
            if result:
                break
            await asyncio.sleep(0.05)
            result = await bz.read(IMPROV_RESULT)
        assert iv.decode_strings(result[2:-1])[3] == service.name
        bz.bus.disconnect()

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_bless_backend_drops_state_when_bluez_reports_a_disconnect(bless_service: BleService, bluez: str) -> None:
    import dbus

    service = bless_service
    conn = dbus.bus.BusConnection(bluez)
    try:
        mock = dbus.Interface(conn.get_object("org.bluez", "/"), "org.bluez.Mock")
        path = mock.AddDevice("hci0", "AA:BB:CC:DD:EE:FF", "phone")
        device = dbus.Interface(conn.get_object("org.bluez", path), "org.freedesktop.DBus.Mock")

        def connected(value: bool) -> None:
            device.UpdateProperties("org.bluez.Device1", {"Connected": dbus.Boolean(value)})

        connected(True)

        async def partial() -> None:
            bz = FakeBlueZ(bluez, service)
            await bz.open()
            await bz.write(OHM_RX, bytes([7, 0, 0]) + b'{"op":')  # the first chunk of a message
            bz.bus.disconnect()

        asyncio.run(asyncio.wait_for(partial(), 20))
        wait_for(lambda: service.channel.conns["bluez"].reasm.assembling == 7)
        connected(False)  # the phone went away: its half message must not stick to the next one
        wait_for(lambda: service.channel.conns.get("bluez") is not None)
        wait_for(lambda: service.channel.conns["bluez"].reasm.assembling is None)
    finally:
        conn.close()
