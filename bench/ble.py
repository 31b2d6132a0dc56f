"""BLE benchmark: REST round trips over the Ohm channel and a full provisioning flow, on bumble's virtual link.

    python bench/ble.py

One process: a gateway API on loopback, the BLE service (bumble backend on a LocalLink) and a bumble central.
Baseline in the same run, interleaved call by call with the Ohm calls (machine load hits both alike): a bare
bumble GATT peripheral that answers a write with notifications of exactly as many bytes as the Ohm channel sent
for the same call (same MTU, same chunk sizes) - what GATT alone costs. The Ohm figures add chunking, AES-GCM,
the engine hand-offs and the HTTP call to the server.
Cases: a ~100 B answer (GET /api/hello) and a ~20 kB one (GET /api/openapi.json, the size is printed), MTU 517
and 185; then scan -> connect -> MTU -> discover -> handshake -> pair -> Wi-Fi join, timed end to end.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bumble.controller import Controller  # noqa: E402
from bumble.core import UUID  # noqa: E402
from bumble.device import Device, Peer  # noqa: E402
from bumble.gatt import Characteristic, CharacteristicValue, Service  # noqa: E402
from bumble.hci import Address  # noqa: E402
from bumble.host import Host  # noqa: E402
from bumble.transport.common import AsyncPipeSink  # noqa: E402

from bluetooth.backends.bumble_backend import BumbleBackend  # noqa: E402
from bluetooth.central import Central, scan  # noqa: E402
from bluetooth.chunks import LAST, split  # noqa: E402
from bluetooth.config import load as load_ble  # noqa: E402
from bluetooth.service import BleService  # noqa: E402
from server.api import attach as api  # noqa: E402
from server.api.tokens import load_or_create  # noqa: E402
from server.audit import attach as audit  # noqa: E402
from server.config import FIELDS_BY_KEY, load  # noqa: E402
from server.crypto.service import attach as identity  # noqa: E402
from server.gateway import Gateway  # noqa: E402
from server.uplink.broker import free_port  # noqa: E402

ROUNDS = {"small": 100, "large": 8}
ECHO_SERVICE, ECHO_RX, ECHO_TX = (f"0000ec0{i}-0000-1000-8000-00805f9b34fb" for i in range(3))


def start_gateway(data_dir: Path) -> tuple[Gateway, int]:
    """The server with its API on loopback (system service too when this tree has it: Wi-Fi routes)."""
    port = free_port()
    overrides: dict[str, Any] = {
        "data_dir": data_dir,
        "stats_interval": 0,
        "identity.backend": "software",
        "api.host": "127.0.0.1",
        "api.port": port,
        "api.ws_port": 0,
    }
    if "mdns.enabled" in FIELDS_BY_KEY:
        overrides["mdns.enabled"] = False
    services = [audit, identity, api]
    try:
        from server.api.system_service import attach as system

        services.insert(2, system)
        overrides["system.dbus_address"] = "unix:path=/nonexistent/ohm-bench-bus"  # no NetworkManager here
    except ImportError:
        pass
    gw = Gateway(load(None, env={}, overrides=overrides), services=services)
    gw.start()
    gw.engine.start_thread()
    return gw, port


async def make_device(link: Any, address: str) -> Device:
    """A powered bumble device on the link."""
    controller = Controller(address, link=link, public_address=address)
    device = Device(address=Address(address), host=Host(controller, AsyncPipeSink(controller)))
    await device.power_on()
    return device


class Echo:
    """The baseline peripheral: on any write of a LAST chunk, notify the prepared chunks back."""

    def __init__(self, device: Device) -> None:
        self.device = device
        self.reply: list[bytes] = []
        self.tx = Characteristic(UUID(ECHO_TX), Characteristic.Properties.NOTIFY, Characteristic.READABLE, b"")

        def on_write(connection: Any, value: bytes) -> None:
            if value[2] & LAST:
                asyncio.get_running_loop().create_task(self._answer(connection))

        rx = Characteristic(
            UUID(ECHO_RX),
            Characteristic.Properties.WRITE,
            Characteristic.WRITEABLE,
            CharacteristicValue(write=on_write),
        )
        device.add_service(Service(ECHO_SERVICE, [rx, self.tx]))

    async def _answer(self, connection: Any) -> None:
        for chunk in self.reply:
            await self.device.notify_subscriber(connection, self.tx, chunk)


class EchoLink:
    """A central's connection to the echo peripheral: one bare GATT round trip of prepared bytes."""

    def __init__(self, peer: Peer, rx: Any, queue: asyncio.Queue[bytes]) -> None:
        self.peer, self.rx, self.queue = peer, rx, queue

    @classmethod
    async def open(cls, central: Device, echo: Echo, mtu: int) -> EchoLink:
        """Connect to the echo peripheral with `mtu` and subscribe."""
        await echo.device.start_advertising(advertising_data=bytes([5, 9]) + b"Echo", auto_restart=True)
        connection = await central.connect(echo.device.random_address)
        await asyncio.sleep(0.05)  # the peripheral's controller registers the link a moment later
        peer = Peer(connection)
        await peer.request_mtu(mtu)
        await peer.discover_services()
        await peer.discover_characteristics()
        rx = peer.get_characteristics_by_uuid(UUID(ECHO_RX))[0]
        tx = peer.get_characteristics_by_uuid(UUID(ECHO_TX))[0]
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        await peer.subscribe(tx, queue.put_nowait)
        await echo.device.stop_advertising()
        return cls(peer, rx, queue)

    async def round_trip(self, chunks: list[bytes]) -> float:
        """Write the request chunks, wait for the last reply chunk; seconds."""
        start = time.perf_counter()
        for chunk in chunks:
            await self.peer.write_value(self.rx, chunk, with_response=True)
        while not (await self.queue.get())[2] & LAST:
            pass
        return time.perf_counter() - start

    async def close(self) -> None:
        """Disconnect."""
        await self.peer.connection.disconnect()


async def ohm_call(central: Central, path: str) -> tuple[float, int, int]:
    """One sealed REST call: seconds, request and reply bytes on the wire."""
    assert central.session is not None and central.session.box is not None
    start = time.perf_counter()
    req = (central.req + 1) & 0xFF
    message = central.session.box.seal(req, {"method": "GET", "path": path})
    await central.send(message, req=req)
    central.req = req
    _, answer = await central.receive(30)
    took = time.perf_counter() - start
    reply = central.session.box.open(req, answer["box"])
    assert reply["status"] == 200, reply
    return took, len(json.dumps(message).encode()), len(json.dumps(answer, separators=(",", ":")).encode())


async def interleaved(
    central: Central, echo_link: EchoLink, echo: Echo, path: str, mtu: int, rounds: int
) -> tuple[list[float], list[float], int]:
    """Alternate one Ohm call and one bare GATT round trip of the same bytes, so load hits both alike."""
    _, req_size, reply_size = await ohm_call(central, path)  # warm up, and learn the sizes
    echo.reply = split(1, bytes(reply_size), mtu)
    request = split(1, bytes(req_size), mtu)
    ohm, base = [], []
    for _ in range(rounds):
        ohm.append((await ohm_call(central, path))[0])
        base.append(await echo_link.round_trip(request))
    return ohm, base, reply_size


def ms(values: list[float]) -> str:
    """p50/p99 in ms."""
    values = sorted(values)
    p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
    return f"p50 {statistics.median(values) * 1000:7.2f} ms  p99 {p99 * 1000:7.2f} ms"


async def provisioning(service: BleService, central_device: Device) -> tuple[float, dict[str, float], str]:
    """Scan to Wi-Fi answer, with the time of each step."""
    steps: dict[str, float] = {}
    start = last = time.perf_counter()

    def mark(name: str) -> None:
        nonlocal last
        now = time.perf_counter()
        steps[name] = now - last
        last = now

    adv = await scan(central_device)
    mark("scan")
    before = len(service.channel.conns)
    central = await Central.connect(central_device, adv.address, 517, lambda: len(service.channel.conns) > before)
    mark("connect+mtu+discover")
    await central.handshake(service.pop)
    mark("handshake")
    token = await central.call({"op": "pair"})
    assert token["status"] == 200
    mark("pair")
    joined = await central.call({"op": "wifi_connect", "ssid": "Home", "password": "correct horse"})
    mark("wifi_connect")
    total = time.perf_counter() - start
    await central.disconnect()
    return total, steps, f"{joined.get('status')} {joined.get('error') or joined.get('body', '')}"[:80]


def main() -> None:
    """Run every case and print figures with ratios against the baseline."""
    with tempfile.TemporaryDirectory() as tmp:
        gw, port = start_gateway(Path(tmp) / "gw")
        service = None
        try:
            load_or_create(gw.data_dir)
            link = None
            from bumble.link import LocalLink

            link = LocalLink()
            backend = BumbleBackend(link=link, advertising_interval=20.0)
            cfg = load_ble(env={}, data_dir=gw.data_dir, server_url=f"http://127.0.0.1:{port}", poll_interval=0.5)
            service = BleService(cfg, backend)
            service.start()
            deadline = time.monotonic() + 10
            while not service.window.state.open and time.monotonic() < deadline:
                time.sleep(0.05)

            async def setup() -> tuple[Device, Echo]:
                central = await make_device(link, "F1:F1:F1:F1:F1:F1")
                echo = Echo(await make_device(link, "F2:F2:F2:F2:F2:F2"))
                return central, echo

            central_device, echo = service.aio.run(setup()).result(20)
            print(f"BLE benchmark: {backend.name} backend on a virtual link, server on 127.0.0.1:{port}")
            for mtu in (517, 185):
                for case, path in (("small", "/api/hello"), ("large", "/api/openapi.json")):

                    async def run(path: str = path, mtu: int = mtu, case: str = case) -> Any:
                        adv = await scan(central_device)
                        before = len(service.channel.conns)  # type: ignore[union-attr]
                        central = await Central.connect(
                            central_device,
                            adv.address,
                            mtu,
                            lambda: len(service.channel.conns) > before,  # type: ignore[union-attr]
                        )
                        await central.handshake(service.pop)  # type: ignore[union-attr]
                        link = await EchoLink.open(central_device, echo, mtu)
                        try:
                            return await interleaved(central, link, echo, path, mtu, ROUNDS[case])
                        finally:
                            await link.close()
                            await central.disconnect()

                    times, base, reply_size = service.aio.run(run()).result(600)
                    ratio = statistics.median(times) / statistics.median(base)
                    print(
                        f"MTU {mtu:3d} GET {path:18s} reply {reply_size:6d} B on the wire: "
                        f"ohm {ms(times)} | bare GATT {ms(base)} | ratio {ratio:4.1f}x"
                    )
            total, steps, joined = service.aio.run(provisioning(service, central_device)).result(120)
            detail = ", ".join(f"{k} {v * 1000:.1f}" for k, v in steps.items())
            print(f"full provisioning (scan to Wi-Fi answer): {total * 1000:.1f} ms ({detail} ms); Wi-Fi: {joined}")
        finally:
            if service is not None:
                service.stop()
            gw.stop()
            gw.engine.wait_stopped(5)


if __name__ == "__main__":
    main()
