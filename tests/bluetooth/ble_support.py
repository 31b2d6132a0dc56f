"""Helpers of the BLE tests: a real gateway on loopback, the BLE service on a bumble virtual link, a central."""

from __future__ import annotations

import asyncio
import http.client
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bumble.controller import Controller
from bumble.device import Device
from bumble.hci import Address
from bumble.host import Host
from bumble.link import LocalLink
from bumble.transport.common import AsyncPipeSink

from bluetooth.backends.bumble_backend import BumbleBackend
from bluetooth.central import Central, scan
from bluetooth.config import load as load_ble
from bluetooth.service import BleService
from server.gateway import Gateway
from tests.support import wait_for


@dataclass
class Server:
    """The running gateway and its API port."""

    gateway: Gateway
    port: int
    admin: str

    @property
    def url(self) -> str:
        """Base URL of the API."""
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Ble:
    """The BLE service under test, its link, and a central device on the same link."""

    service: BleService
    link: LocalLink
    central: Device

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 20.0) -> Any:
        """Run a coroutine on the service's BLE loop (bumble's virtual link lives there) and wait."""
        return self.service.aio.run(coro).result(timeout)

    def connect(self, mtu: int = 517) -> Central:
        """Scan by name prefix, connect and negotiate `mtu`."""

        before = len(self.service.channel.conns)

        async def go() -> Central:
            adv = await scan(self.central)
            return await Central.connect(self.central, adv.address, mtu, self.peer_sees(before))

        return self.run(go())

    def peer_sees(self, before: int) -> Callable[[], bool]:
        """True once the service counts more connections than `before` (its controller has the link)."""
        return lambda: len(self.service.channel.conns) > before

    def in_engine(self, fn: Callable[[float], Any]) -> None:
        """Run `fn(now)` as an engine task and wait for it (state changes from the engine's thread)."""
        done: list[bool] = []
        self.service.engine.call_soon(lambda now: (fn(now), done.append(True)))
        wait_for(lambda: done)


def start_ble(data_dir: Path, server_url: str, **settings: Any) -> tuple[BleService, LocalLink, Device]:
    """Start a BleService on a fresh LocalLink and make a central on it (the caller stops the service)."""
    link = LocalLink()
    backend = BumbleBackend(link=link, advertising_interval=20.0)
    settings.setdefault("advert_cycle", 0.3)  # both advertisements within a short scan
    cfg = load_ble(env={}, data_dir=data_dir, server_url=server_url, poll_interval=0.2, **settings)
    service = BleService(cfg, backend)
    service.start()

    async def make_central() -> Device:
        controller = Controller("central", link=link, public_address="F1:F1:F1:F1:F1:F1")
        device = Device(address=Address("F1:F1:F1:F1:F1:F1"), host=Host(controller, AsyncPipeSink(controller)))
        await device.power_on()
        return device

    try:
        central = service.aio.run(make_central()).result(10)
    except BaseException:
        service.stop()
        raise
    return service, link, central


def close_window(ble: Ble, server: Server) -> None:
    """Close the window: through the server's API when it has one, else the service's local window."""
    if "provisioning" in server.gateway.services:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        try:
            conn.request("DELETE", "/api/provisioning/window", headers={"Authorization": f"Bearer {server.admin}"})
            assert conn.getresponse().status == 200
        finally:
            conn.close()
        wait_for(lambda: not ble.service.window.state.open)
        return

    def close(now: float) -> None:
        ble.service.window._local_until = now
        ble.service.window.tick(now)

    ble.in_engine(close)
    assert not ble.service.window.state.open


def arun(coro: Coroutine[Any, Any, Any]) -> Any:
    """asyncio.run for pure coroutine tests."""
    return asyncio.run(coro)
