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
    from server.audit import attach as audit  # first: every later service may record actions
    from server.devices import attach as devices

    services: list[Attach] = [audit, devices]
    # Identity, outbox, telemetry, uplink (issue 4): in this order, each finds the previous in gateway.services.
    from server.crypto.service import attach as identity
    from server.outbox.service import attach as outbox
    from server.telemetry.service import attach as telemetry
    from server.uplink.service import attach as uplink

    services += [identity, outbox, telemetry, uplink]
    from server.api.system_service import attach as system  # settings, owner, provisioning, Wi-Fi, power

    services.append(system)
    from server.control import attach as control  # control actions (issue 10): needs devices and audit
    from server.ha import attach as ha  # Home Assistant discovery (off unless ha.enabled)

    services += [control, ha]
    from server.api import attach as api  # local REST API (issue 5): last, so it sees every service

    services.append(api)
    return services
