"""Identity service: opens the configured signer at start and offers it as gateway.services['identity']."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .choose import open_signer

if TYPE_CHECKING:
    from server.gateway import Gateway

log = logging.getLogger("ohm.crypto")


def attach(gateway: Gateway) -> None:
    """Open the gateway key (creating a software key on first boot) and register it."""
    cfg = gateway.config
    signer = open_signer(
        cfg["identity.backend"],
        gateway.data_dir,
        i2c_bus=cfg["identity.i2c_bus"],
        i2c_address=cfg["identity.i2c_address"],
    )
    gateway.services["identity"] = signer
    gateway.engine.on_shutdown("identity", signer.close)
    log.info("gateway id %s (%s key)", signer.device_id, signer.backend)
