"""Home Assistant MQTT discovery: readings as sensors, writable points as number/switch entities (optional)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from server.gateway import Gateway


def attach(gateway: Gateway) -> None:
    """Start the Home Assistant bridge when `ha.enabled` is set (a separate local broker connection)."""
    from .bridge import attach as attach_bridge

    attach_bridge(gateway)
