"""Configuration: defaults < TOML file < stored settings < OHM_* environment < command line, validated at start.

Every setting is one row of FIELDS: a dotted key (`mqtt.host`), its type, default, limits and
help. The environment name is derived from the key (`OHM_MQTT_HOST`). All problems are
collected and reported together, naming the source and the setting.

Stored settings are the values changed at run time through the API (PATCH /api/settings), kept in
`<data_dir>/settings.json` (server/settings.py). They rank above the TOML file, so a change made on the
gateway survives a restart, and below the environment and the command line, so an installer's explicit
choice always wins. A stored value that is no longer valid is logged and skipped, never fatal.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_PREFIX = "OHM_"
# Variables the BLE service (bluetooth/config.py) reads: one .env or fleet-wide variable set serves both containers,
# so the gateway passes over them instead of calling them unknown.
FOREIGN_ENV_PREFIXES = ("OHM_BLE_",)
FOREIGN_ENV_NAMES = frozenset({"OHM_SERVER_URL"})


class ConfigError(ValueError):
    """One or more settings are invalid; the message lists every problem."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid configuration:\n  " + "\n  ".join(self.problems))


@dataclass(frozen=True)
class Field:
    """One setting: key, type, default, help, and optional limits."""

    key: str
    type: type
    default: Any
    help: str
    choices: tuple[str, ...] | None = None
    min: float | None = None
    max: float | None = None
    secret: bool = False
    check: Callable[[Any], str | None] | None = field(default=None, compare=False)

    @property
    def env(self) -> str:
        """The environment variable that sets this field."""
        return ENV_PREFIX + self.key.replace(".", "_").upper()

    def parse(self, raw: Any) -> Any:
        """Convert a raw value (string from the environment, or TOML value) and validate it."""
        value = _convert(self.type, raw)
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"must be one of {', '.join(self.choices)}")
        if self.min is not None and value < self.min:
            raise ValueError(f"must be at least {self.min:g}")
        if self.max is not None and value > self.max:
            raise ValueError(f"must be at most {self.max:g}")
        if self.check is not None:
            problem = self.check(value)
            if problem:
                raise ValueError(problem)
        return value


def _convert(kind: type, raw: Any) -> Any:
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ValueError("must be true or false")
    if kind is int:
        if isinstance(raw, bool):
            raise ValueError("must be a whole number")
        try:
            return int(str(raw).strip(), 10) if not isinstance(raw, int) else raw
        except ValueError:
            raise ValueError("must be a whole number") from None
    if kind is float:
        if isinstance(raw, bool):
            raise ValueError("must be a number")
        try:
            return float(raw)
        except (TypeError, ValueError):
            raise ValueError("must be a number") from None
    if kind is Path:
        text = str(raw).strip()
        if not text:
            raise ValueError("must be a path")
        return Path(text).expanduser()
    if kind is str:
        if not isinstance(raw, str | int | float) or isinstance(raw, bool):
            raise ValueError("must be text")
        return str(raw)
    raise TypeError(f"unsupported setting type {kind!r}")


FIELDS: tuple[Field, ...] = (
    # -- core ----------------------------------------------------------------------------
    Field("data_dir", Path, Path("data"), "where settings, keys and the outbox are kept"),
    Field("log_level", str, "info", "log verbosity", choices=("debug", "info", "warning", "error")),
    Field("workers", int, 4, "threads for blocking I/O (Modbus, disk, network)", min=1, max=64),
    Field("max_pending_jobs", int, 1024, "blocking jobs that may wait for a worker", min=16, max=100_000),
    Field("stats_interval", float, 60.0, "seconds between engine statistics in the log (0 = never)", min=0, max=86400),
    Field("shutdown_timeout", float, 5.0, "seconds allowed for a clean stop on SIGTERM/SIGINT", min=0.5, max=60),
    Field("name", str, "", "a human name for this gateway (defaults to Ohm-<id>)"),
    # -- system: settings, owner, provisioning, Wi-Fi, mDNS (issue 5) ---------------------------
    Field("network.wired", bool, False, "the gateway is on Ethernet (or needs no network): no Wi-Fi is needed"),
    Field(
        "provisioning.window_s", float, 300.0, "seconds the provisioning window stays open by default", min=1, max=900
    ),
    Field("system.dbus_address", str, "", "system D-Bus address for NetworkManager and logind (empty = the standard)"),
    Field("wifi.connect_timeout", float, 30.0, "seconds to wait for a Wi-Fi connection to come up", min=1, max=120),
    Field("mdns.enabled", bool, True, "advertise the gateway as _ohm._tcp.local. (mDNS) on the API's interfaces"),
    # -- devices -------------------------------------------------------------------------
    Field("devices.backoff_cap", float, 10.0, "longest seconds before retrying an offline device", min=1, max=60),
    # -- Home Assistant discovery for control actions (issue 10) ---------------------------------------
    Field("ha.enabled", bool, False, "publish Home Assistant MQTT discovery on a local broker (ha.host)"),
    Field("ha.host", str, "127.0.0.1", "the local MQTT broker Home Assistant listens on (not the backend uplink)"),
    Field("ha.port", int, 1883, "port of the Home Assistant MQTT broker", min=1, max=65535),
    Field("ha.username", str, "", "user name on the Home Assistant broker (empty = none)"),
    Field("ha.password", str, "", "password on the Home Assistant broker", secret=True),
    Field("ha.prefix", str, "homeassistant", "Home Assistant's discovery prefix"),
    Field("ha.base_topic", str, "ohm-local", "first level of the state and command topics on the local broker"),
    # -- identity, telemetry, outbox, uplink (issue 4) -------------------------------------
    Field(
        "identity.backend",
        str,
        "auto",
        "gateway key: auto (chip if present, else software), software, atecc608",
        choices=("auto", "software", "atecc608"),
    ),
    Field("identity.i2c_bus", int, 1, "I2C bus of the ATECC608 secure element", min=0, max=255),
    Field("identity.i2c_address", int, 0xC0, "I2C address of the ATECC608 (8-bit form, 0xC0 = 192)", min=0, max=255),
    Field(
        "telemetry.batch_interval", float, 10.0, "seconds of readings per signed telemetry batch", min=0.05, max=3600
    ),
    Field(
        "outbox.max_bytes",
        int,
        256 * 1024 * 1024,
        "outbox size bound; the oldest telemetry is dropped beyond it",
        min=4096,
    ),
    Field(
        "outbox.max_age", float, 30 * 86400.0, "seconds telemetry may wait in the outbox before it is dropped", min=1
    ),
    Field("mqtt.host", str, "", "MQTT broker host name (empty = uplink disabled)"),
    Field("mqtt.port", int, 0, "MQTT broker port (0 = 1883, or 8883 with TLS)", min=0, max=65535),
    Field("mqtt.tls", bool, False, "connect with TLS"),
    Field("mqtt.ca_file", str, "", "CA certificate file for the broker (empty = system CAs)"),
    Field("mqtt.cert_file", str, "", "client certificate file for mutual TLS"),
    Field("mqtt.key_file", str, "", "client private key file for mutual TLS"),
    Field("mqtt.username", str, "", "MQTT user name (empty = none)"),
    Field("mqtt.password", str, "", "MQTT password", secret=True),
    Field("mqtt.client_id", str, "", "MQTT client id (empty = the gateway id)"),
    Field("mqtt.topic_prefix", str, "ohm", "first level of every topic: <prefix>/<gateway>/telemetry ..."),
    Field(
        "mqtt.protocol",
        str,
        "auto",
        "MQTT version: auto (5, falling back to 3.1.1), 5 or 3.1.1",
        choices=("auto", "5", "3.1.1"),
    ),
    Field("mqtt.keepalive", int, 30, "seconds between MQTT keepalives", min=5, max=3600),
    Field("mqtt.inflight", int, 64, "QoS 1 messages awaiting PUBACK at once", min=1, max=1000),
    Field(
        "mqtt.backlog_rate",
        float,
        200.0,
        "messages per second the backlog drain may send (live data goes first)",
        min=0.1,
    ),
    Field("mqtt.backoff_max", float, 10.0, "longest wait between reconnect attempts, seconds", min=0.1, max=10),
    Field("mqtt.backend_key", str, "", "backend public key (PEM/JWK file or inline) that signs commands; empty = none"),
    Field("mqtt.command_max_ttl", float, 3600.0, "commands expiring further ahead than this are refused", min=1),
    # -- local REST API (issue 5) -----------------------------------------------------------
    Field("api.host", str, "0.0.0.0", "address the local API listens on (0.0.0.0 = every interface, for the LAN)"),
    Field("api.port", int, 8080, "TCP port of the local API (0 = API disabled)", min=0, max=65535),
    Field("api.threads", int, 4, "threads answering API requests", min=1, max=32),
    # -- dashboard (issue 5) ------------------------------------------------------------------
    Field("api.ws_port", int, 8081, "port of the dashboard's live WebSocket on api.host (0 = off)", min=0, max=65535),
)

FIELDS_BY_KEY = {f.key: f for f in FIELDS}


class Config(Mapping[str, Any]):
    """Validated settings, read by dotted key: `cfg["log_level"]` or `cfg.get("mqtt.host")`."""

    def __init__(self, values: Mapping[str, Any], sources: Mapping[str, str]) -> None:
        self._values = dict(values)
        self.sources = dict(sources)

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __getattr__(self, key: str) -> Any:
        try:
            return self._values[key]
        except KeyError:
            raise AttributeError(key) from None

    def describe(self) -> list[tuple[str, str, str]]:
        """(key, value, source) for every setting; secrets are never shown."""
        rows = []
        for f in FIELDS:
            value = self._values[f.key]
            shown = "(set)" if f.secret and value else "(unset)" if f.secret else str(value)
            rows.append((f.key, shown, self.sources[f.key]))
        return rows


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def _unknown(key: str, source: str) -> str:
    close = difflib.get_close_matches(key, FIELDS_BY_KEY, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"{source}: unknown setting '{key}'{hint}"


def load(
    path: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    stored: bool = True,
) -> Config:
    """Build the configuration from defaults, a TOML file, stored settings, the environment and overrides."""
    env = os.environ if env is None else env
    values = {f.key: f.default for f in FIELDS}
    sources = {f.key: "default" for f in FIELDS}
    problems: list[str] = []

    if path is not None:
        try:
            raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError([f"{path}: no such config file"]) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError([f"{path}: cannot read: {exc}"]) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None
        for key, value in _flatten(raw).items():
            _apply(key, value, f"{path}", values, sources, problems)

    if stored:
        _apply_stored(_peek_data_dir(values["data_dir"], env, overrides), values, sources)

    known_envs = {f.env: f.key for f in FIELDS}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name == ENV_PREFIX + "CONFIG":
            continue
        if name in FOREIGN_ENV_NAMES or name.startswith(FOREIGN_ENV_PREFIXES):
            continue
        key = known_envs.get(name)
        if key is None:
            close = difflib.get_close_matches(name, known_envs, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            problems.append(f"environment: unknown variable {name}{hint}")
            continue
        _apply(key, value, f"environment {name}", values, sources, problems)

    for key, value in (overrides or {}).items():
        if value is not None:
            _apply(key, value, "command line", values, sources, problems)

    if problems:
        raise ConfigError(problems)
    return Config(values, sources)


def _apply(
    key: str, raw: Any, source: str, values: dict[str, Any], sources: dict[str, str], problems: list[str]
) -> None:
    spec = FIELDS_BY_KEY.get(key)
    if spec is None:
        problems.append(_unknown(key, source))
        return
    try:
        values[key] = spec.parse(raw)
        sources[key] = source
    except ValueError as exc:
        shown = "(hidden)" if spec.secret else repr(raw)
        problems.append(f"{source}: {key} = {shown}: {exc}")


def _peek_data_dir(current: Any, env: Mapping[str, str], overrides: Mapping[str, Any] | None) -> Path:
    """The data_dir the higher layers will settle on (the stored layer lives inside it, so it cannot set it)."""
    spec = FIELDS_BY_KEY["data_dir"]
    for raw in ((overrides or {}).get("data_dir"), env.get(spec.env)):
        if raw is not None:
            try:
                return spec.parse(raw)
            except ValueError:
                return Path(current)  # reported by that layer's own check
    return Path(current)


def _apply_stored(data_dir: Path, values: dict[str, Any], sources: dict[str, str]) -> None:
    """The stored-settings layer; a value that is unknown or invalid now (after an upgrade) is logged and skipped."""
    import logging

    from server.settings import FIXED_KEYS, SOURCE, stored_layer

    log = logging.getLogger("ohm.config")
    for key, raw in stored_layer(data_dir).items():
        spec = FIELDS_BY_KEY.get(key)
        if spec is None or key in FIXED_KEYS:
            log.warning("stored setting '%s' is not a setting (any more); ignored", key)
            continue
        try:
            values[key] = spec.parse(raw)
            sources[key] = SOURCE
        except ValueError as exc:
            log.warning("stored setting %s ignored: %s", key, exc)


def reference() -> str:
    """A Markdown table of every setting, for the README."""
    lines = ["| setting | environment | default | meaning |", "|---|---|---|---|"]
    for f in FIELDS:
        default = "(generated)" if f.secret else f"`{f.default}`" if f.default != "" else "(empty)"
        extra = f" One of: {', '.join(f.choices)}." if f.choices else ""
        lines.append(f"| `{f.key}` | `{f.env}` | {default} | {f.help}.{extra} |")
    return "\n".join(lines)
