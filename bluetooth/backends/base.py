"""The one contract every BLE backend implements (like bleak's backends: one interface, one module each)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Protocol

from bluetooth.gatt import Advert, ServiceDef

DEFAULT_MTU = 23


class Handler(Protocol):
    """What a backend calls, on its asyncio loop; implementations must return at once (post work elsewhere)."""

    def on_connect(self, conn: str) -> None:
        """A central connected."""

    def on_disconnect(self, conn: str) -> None:
        """A central went away."""

    def on_mtu(self, conn: str, mtu: int) -> None:
        """The ATT MTU of a connection changed."""

    def on_write(self, conn: str, char: str, value: bytes) -> None:
        """A central wrote `value` to characteristic `char` (lower-case UUID)."""

    def on_read(self, conn: str, char: str) -> bytes:
        """The current value of a readable characteristic."""


class Backend(ABC):
    """A GATT server with advertising; every coroutine runs on the service's asyncio loop."""

    name: str = "?"
    # True when the advertisement is legacy 31-byte data the service must cycle itself (Improv: service UUID and
    # service data in one advertisement); BlueZ arranges advertisement and scan response on its own.
    cycles_adverts: bool = False

    @abstractmethod
    async def start(self, services: tuple[ServiceDef, ...], advert: Advert, handler: Handler) -> None:
        """Register the services, start advertising and deliver events to `handler`."""

    @abstractmethod
    async def set_advert(self, advert: Advert) -> None:
        """Replace the advertisement (name, service data)."""

    @abstractmethod
    async def notify(self, conn: str | None, char: str, value: bytes) -> None:
        """Notify `value` on `char` to one connection, or to every subscriber when `conn` is None."""

    @abstractmethod
    def mtu(self, conn: str) -> int:
        """The ATT MTU of a connection (23 when unknown)."""

    @abstractmethod
    async def stop(self) -> None:
        """Stop advertising, drop connections and release the adapter."""
