"""Control actions: validated writes to profile points, timed with fail-safe revert, scheduled, arbitrated."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from server.gateway import Gateway


def attach(gateway: Gateway) -> None:
    """Start the control service (after devices and audit) and register its backend commands."""
    from .service import attach as attach_service

    attach_service(gateway)
