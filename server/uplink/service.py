"""Uplink service: reads mqtt.* settings, starts the client, registers as gateway.services['uplink']."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from server.crypto.keys import load_public_key

from .client import MqttSettings, Uplink

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec

    from server.gateway import Gateway

log = logging.getLogger("ohm.uplink")


def load_backend_key(value: str) -> ec.EllipticCurvePublicKey | None:
    """The backend key from a file path or inline PEM/JWK text; None when unset."""
    value = value.strip()
    if not value:
        return None
    text = value if value.startswith(("-----BEGIN", "{")) else Path(value).expanduser().read_text()
    return load_public_key(text)


def attach(gateway: Gateway) -> None:
    """Start the uplink, or say clearly why it is off."""
    cfg = gateway.config
    if not cfg["mqtt.host"]:
        log.info("uplink disabled: mqtt.host is empty (set OHM_MQTT_HOST); telemetry waits in the outbox")
        return
    signer, outbox = gateway.services.get("identity"), gateway.services.get("outbox")
    if signer is None or outbox is None:
        log.error("uplink needs the identity and outbox services; not started")
        return
    settings = MqttSettings.from_config(cfg, cfg["telemetry.batch_interval"])
    problems = settings.problems()
    try:
        backend_key = load_backend_key(cfg["mqtt.backend_key"])
    except (OSError, ValueError) as exc:
        problems.append(f"mqtt.backend_key: {exc}")
    if problems:
        log.error("uplink not started: %s", "; ".join(problems))
        return
    if backend_key is None:
        log.info("no mqtt.backend_key: every command will be refused")
    uplink = Uplink(gateway.engine, signer, outbox, settings, gateway=gateway, backend_key=backend_key)
    outbox.on_new(uplink.kick)
    gateway.services["uplink"] = uplink
    uplink.start()
    gateway.engine.on_shutdown("uplink", uplink.stop)
