"""The services the gateway runs, attached in this order at start.

Each entry is `attach(gateway)`: it registers tasks, bus subscriptions and shutdown hooks
on the gateway's engine and returns nothing. Kept in one place so the wiring is visible.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from server.gateway import Gateway

Attach = Callable[["Gateway"], None]


def default_services() -> list[Attach]:
    """The services a production gateway runs (imported lazily to keep start-up fast)."""
    services: list[Attach] = []
    from server.devices import attach as devices

    services.append(devices)
    return services
