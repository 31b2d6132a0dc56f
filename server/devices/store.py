"""The device list in SQLite (`devices.sqlite` under the data directory); each change is one transaction."""

from __future__ import annotations

import functools
import json
import logging
import os
import sqlite3
import threading
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .meters import METER_TRANSPORTS, is_meter_profile, load_meter_profile, meter_profile_names
from .profile import ProfileError, load_profile

log = logging.getLogger("ohm.devices")

TRANSPORTS = ("tcp", "rtu", "solarman", *METER_TRANSPORTS)
HOST_TRANSPORTS = ("tcp", "solarman", "p1_tcp", "homewizard", "envoy")
MAX_TOKEN = 4096  # Enphase tokens are JWTs of about 400-900 characters


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
    token: str = field(default="", repr=False)  # Envoy owner token: a secret, never in as_dict() or a repr
    tls_pin: str = ""  # SHA-256 (hex) of the Envoy's self-signed certificate, pinned on first use

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeviceConfig:
        """Build and validate from plain data (API bodies, stored rows)."""
        data = {k: v for k, v in data.items() if k != "token_set"}  # read-only, from as_dict()
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
        meter = is_meter_profile(self.profile)
        try:
            profile = load_meter_profile(self.profile) if meter else load_profile(self.profile)
        except ProfileError as exc:
            raise DeviceConfigError(f"profile: {exc}") from None
        transport = self.transport or profile.quirks.transport
        if transport not in TRANSPORTS:
            raise DeviceConfigError(f"transport: must be one of {', '.join(TRANSPORTS)}")
        if meter and transport not in profile.transports:
            raise DeviceConfigError(f"transport: {self.profile} devices use {', '.join(profile.transports)}")
        if not meter and transport in METER_TRANSPORTS:
            known = ", ".join(meter_profile_names())
            raise DeviceConfigError(f"transport: {transport} needs a meter profile ({known})")
        if transport in HOST_TRANSPORTS and not self.host:
            raise DeviceConfigError(f"host: required for {transport} devices")
        if transport in ("rtu", "p1_serial") and not self.device:
            raise DeviceConfigError(f"device: the serial port path is required for {transport}")
        if self.token and transport != "envoy":
            raise DeviceConfigError("token: only Envoy devices take a token")
        if len(self.token) > MAX_TOKEN or not self.token.isprintable() or " " in self.token:
            raise DeviceConfigError(f"token: at most {MAX_TOKEN} printable characters without spaces")
        if self.tls_pin and (len(self.tls_pin) != 64 or not all(c in "0123456789abcdef" for c in self.tls_pin)):
            raise DeviceConfigError("tls_pin: the certificate's SHA-256 as 64 lowercase hex digits, or empty")
        if not 0 <= self.port <= 65535:
            raise DeviceConfigError("port: must be 1-65535")
        if not -1 <= self.unit_id <= 255:
            raise DeviceConfigError("unit_id: must be 0-255")
        if not 1.0 <= float(self.interval) <= 86400:
            raise DeviceConfigError("interval: must be between 1 and 86400 seconds")
        if transport == "solarman" and not self.logger_serial:
            raise DeviceConfigError("logger_serial: the Solarman logger's serial number is required")

    def as_dict(self, *, secrets: bool = False) -> dict[str, Any]:
        """Plain data for JSON; the token only with `secrets` (the store), else just whether one is set."""
        data = asdict(self)
        if not secrets:
            data["token_set"] = bool(data.pop("token"))
        return data


class DeviceStore:
    """SQLite-backed device list; writes are atomic transactions, safe from any thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        # The list may hold device tokens: owner-only, set before SQLite opens it (its -wal/-shm copy the mode).
        for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            if p == path:
                p.touch(mode=0o600, exist_ok=True)
            if p.exists():
                os.chmod(p, 0o600)
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
            row = (cfg.id, json.dumps(cfg.as_dict(secrets=True)))
            self._db.execute("INSERT OR REPLACE INTO devices (id, config) VALUES (?, ?)", row)

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
