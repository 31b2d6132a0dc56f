"""Settings of the BLE service: OHM_* environment (shared names with `server` where they mean the same)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from server.config import ConfigError, Field

FIELDS: tuple[Field, ...] = (
    Field("data_dir", Path, Path("data"), "the gateway's data dir (API token, PoP code): same as the server's"),
    Field("server_url", str, "http://127.0.0.1:8080", "where the server's REST API listens"),
    Field(
        "ble.backend",
        str,
        "auto",
        "auto (bless if BlueZ is there, else bumble), bless or bumble",
        choices=("auto", "bless", "bumble"),
    ),
    Field(
        "ble.transport", str, "usb:0", "bumble HCI transport, e.g. usb:0, serial:/dev/ttyUSB0, tcp-client:127.0.0.1:P"
    ),
    Field("ble.adapter", str, "hci0", "BlueZ adapter for bless"),
    Field(
        "ble.advert_cycle",
        float,
        1.0,
        "seconds between the two advertisements (name / Improv UUID) when 31 bytes hold not both (0 = no cycling)",
        min=0,
        max=10,
    ),
    Field("ble.poll_interval", float, 2.0, "seconds between reads of the server's provisioning state", min=0.2, max=60),
    Field("ble.local_window", float, 300.0, "window length when the server has no provisioning API", min=10, max=3600),
    Field("ble.button_pin", int, -1, "BCM GPIO pin of the provisioning button (-1 = none)", min=-1, max=1023),
    Field("ble.gpio_root", Path, Path("/sys/class/gpio"), "sysfs GPIO directory"),
    Field("ble.button_active_low", bool, True, "the button pulls the pin low when pressed"),
    Field("ble.http_timeout", float, 20.0, "seconds to wait for the server per request", min=1, max=120),
    Field("ble.dashboard_url", str, "", "URL in the Improv result (default http://<address or host>.local:8080/)"),
    Field("ble.gateway_id", str, "", "gateway id override (normally read from the server's /api/crypto)"),
)


@dataclass(frozen=True)
class Settings:
    """The validated settings."""

    data_dir: Path
    server_url: str
    backend: str
    transport: str
    adapter: str
    advert_cycle: float
    poll_interval: float
    local_window: float
    button_pin: int
    gpio_root: Path
    button_active_low: bool
    http_timeout: float
    dashboard_url: str
    gateway_id: str


def load(env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Defaults < environment < keyword overrides (keys without the `ble.` prefix); all problems at once."""
    env = os.environ if env is None else env
    values, problems = {}, []
    for f in FIELDS:
        short = f.key.removeprefix("ble.")
        raw = overrides.get(short)
        source = "argument"
        if raw is None and f.env in env:
            raw, source = env[f.env], f.env
        if raw is None:
            values[short] = f.default
            continue
        try:
            values[short] = f.parse(raw)
        except ValueError as exc:
            problems.append(f"{source} {f.key}={raw!r}: {exc}")
    unknown = set(overrides) - {f.name for f in fields(Settings)}
    problems += [f"unknown setting {key!r}" for key in sorted(unknown)]
    if problems:
        raise ConfigError(problems)
    return Settings(**values)
