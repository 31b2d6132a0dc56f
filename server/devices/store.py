"""The device list in SQLite (`devices.sqlite` under the data directory); each change is one transaction."""

from __future__ import annotations

import functools
import json
import logging
import sqlite3
import threading
import typing
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from .profile import ProfileError, load_profile

log = logging.getLogger("ohm.devices")

TRANSPORTS = ("tcp", "rtu", "solarman")


class DeviceConfigError(ValueError):
    """A device definition is invalid; the message says which field and why."""


@dataclass(frozen=True)
class DeviceConfig:
    """One configured device: which profile, how to reach it, how often to poll."""

    id: str
    profile: str
    transport: str = ""  # empty: the profile's default
    host: str = ""
    port: int = 0  # 0: the profile's default
    device: str = ""  # serial path for RTU
    baudrate: int = 0
    parity: str = ""
    unit_id: int = -1  # -1: the profile's default
    logger_serial: int = 0
    interval: float = 10.0
    name: str = ""
    enabled: bool = True

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeviceConfig:
        """Build and validate from plain data (API bodies, stored rows)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise DeviceConfigError(f"unknown device field {unknown[0]!r} (known: {', '.join(sorted(known))})")
        try:
            cfg = cls(**data)
        except TypeError as exc:
            raise DeviceConfigError(str(exc)) from None
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Raise DeviceConfigError naming the first bad field."""
        for name, expected in _field_types().items():
            value = getattr(self, name)
            wrong_bool = isinstance(value, bool) and expected is not bool
            if wrong_bool or not isinstance(value, (int, float) if expected is float else expected):
                raise DeviceConfigError(f"{name}: must be {_TYPE_WORDS[expected]}, got {type(value).__name__}")
        if not self.id or not all(c.isalnum() or c in "-_." for c in self.id) or len(self.id) > 64:
            raise DeviceConfigError("id: use 1-64 letters, digits, '-', '_' or '.'")
        try:
            profile = load_profile(self.profile)
        except ProfileError as exc:
            raise DeviceConfigError(f"profile: {exc}") from None
        transport = self.transport or profile.quirks.transport
        if transport not in TRANSPORTS:
            raise DeviceConfigError(f"transport: must be one of {', '.join(TRANSPORTS)}")
        if transport in ("tcp", "solarman") and not self.host:
            raise DeviceConfigError("host: required for TCP and Solarman devices")
        if transport == "rtu" and not self.device:
            raise DeviceConfigError("device: the serial port path is required for RTU")
        if not 0 <= self.port <= 65535:
            raise DeviceConfigError("port: must be 1-65535")
        if not -1 <= self.unit_id <= 255:
            raise DeviceConfigError("unit_id: must be 0-255")
        if not 1.0 <= float(self.interval) <= 86400:
            raise DeviceConfigError("interval: must be between 1 and 86400 seconds")
        if transport == "solarman" and not self.logger_serial:
            raise DeviceConfigError("logger_serial: the Solarman logger's serial number is required")

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return asdict(self)


class DeviceStore:
    """SQLite-backed device list; writes are atomic transactions, safe from any thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("CREATE TABLE IF NOT EXISTS devices (id TEXT PRIMARY KEY, config TEXT NOT NULL)")

    def load(self) -> list[DeviceConfig]:
        """Every stored device; a row that no longer validates is skipped with its reason."""
        with self._lock:
            rows = self._db.execute("SELECT id, config FROM devices ORDER BY id").fetchall()
        out = []
        for device_id, text in rows:
            try:
                out.append(DeviceConfig.from_dict(json.loads(text)))
            except (ValueError, DeviceConfigError) as exc:
                log.warning("stored device %s skipped: %s", device_id, exc)
        return out

    def put(self, cfg: DeviceConfig) -> None:
        """Insert or replace one device (one transaction)."""
        with self._lock:  # a single statement in autocommit mode is its own atomic transaction
            self._db.execute(
                "INSERT OR REPLACE INTO devices (id, config) VALUES (?, ?)", (cfg.id, json.dumps(cfg.as_dict()))
            )

    def delete(self, device_id: str) -> None:
        """Remove one device (one transaction)."""
        with self._lock:
            self._db.execute("DELETE FROM devices WHERE id = ?", (device_id,))

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()


_TYPE_WORDS = {str: "text", int: "a whole number", float: "a number", bool: "true or false"}


@functools.cache
def _field_types() -> dict[str, type]:
    """DeviceConfig's field types, resolved once (annotations are strings under `from __future__`)."""
    return dict(typing.get_type_hints(DeviceConfig))
