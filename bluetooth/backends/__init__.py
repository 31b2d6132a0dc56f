"""BLE backends behind one contract (base.Backend); `create()` is the one place that picks one."""

from __future__ import annotations

import importlib.util
import os
from typing import Any

from .base import Backend, Handler

__all__ = ["BACKENDS", "Backend", "Handler", "create", "resolve"]

BACKENDS = ("bumble", "bless")


def _system_bus_present() -> bool:
    """Whether a system D-Bus is there: DBUS_SYSTEM_BUS_ADDRESS (containers mount it elsewhere) or the default."""
    address = os.environ.get("DBUS_SYSTEM_BUS_ADDRESS", "")
    for part in address.split(";"):
        transport, _, params = part.partition(":")
        if transport == "unix":
            for param in params.split(","):
                key, _, value = param.partition("=")
                if key == "path" and os.path.exists(value):
                    return True
                if key == "abstract":
                    return True  # abstract sockets have no file to check; trust the address
    return os.path.exists("/run/dbus/system_bus_socket")


def resolve(name: str) -> str:
    """`auto` -> bless where BlueZ's system bus is there, else bumble; other names are checked."""
    if name == "auto":
        bluez = _system_bus_present() and importlib.util.find_spec("bless") is not None
        return "bless" if bluez else "bumble"
    if name not in BACKENDS:
        raise ValueError(f"unknown BLE backend {name!r}; choose auto, {', '.join(BACKENDS)}")
    return name


def create(name: str, **options: Any) -> Backend:
    """Make the named backend (imports only that backend's library)."""
    name = resolve(name)
    if name == "bumble":
        from .bumble_backend import BumbleBackend

        return BumbleBackend(**options)
    from .bless_backend import BlessBackend

    return BlessBackend(**options)
