"""Settings changed at run time (REST API, BLE) and the owner, kept in `<data_dir>/settings.json`.

This file is one layer of the configuration: defaults < TOML file < this file < OHM_* environment <
command line (server/config.py `load`). So an installer's environment always wins, and a value set
through the API survives a restart. Values are validated by the same FIELDS rules as every other
layer. The file is written atomically (temp file, fsync, rename, fsync of the folder) with mode 0600
because it may hold secrets (mqtt.password).
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from server.config import FIELDS, FIELDS_BY_KEY, Config, Field

log = logging.getLogger("ohm.settings")

FILE_NAME = "settings.json"
SOURCE = "settings"  # the name of this layer in Config.sources
FORMAT = 1
MASK = "***"  # how a set secret is shown; sent back unchanged it means "keep the secret"

# Keys the running gateway picks up at once; every other key is saved and takes effect after a restart.
LIVE_KEYS = frozenset({"log_level", "name", "network.wired", "provisioning.window_s"})
# Keys the API never changes: the settings file lives in data_dir, so moving it from inside is circular.
FIXED_KEYS = frozenset({"data_dir"})
OWNER_MAX = 128
NAME_MAX = 64

TYPE_NAMES = {str: "string", int: "integer", float: "number", bool: "boolean", Path: "path"}


class SettingsError(ValueError):
    """A refused change; the message names the key and says what is wrong."""


def path_in(data_dir: Path) -> Path:
    """Where the settings file of a data directory is."""
    return Path(data_dir) / FILE_NAME


def read_file(data_dir: Path) -> dict[str, Any]:
    """The whole stored document ({} if there is none); raises ValueError if it is damaged."""
    path = path_in(data_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        doc = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("settings", {}), dict):
        raise ValueError(f"{path}: not a settings document")
    return doc


def stored_layer(data_dir: Path) -> dict[str, Any]:
    """The stored {key: raw value} layer for config.load; a damaged file is reported and skipped."""
    try:
        return dict(read_file(data_dir).get("settings", {}))
    except ValueError as exc:
        # Booting with the other layers beats not booting at all on a headless gateway.
        log.error("stored settings ignored: %s", exc)
        return {}


def write_file(data_dir: Path, doc: Mapping[str, Any]) -> None:
    """Replace the settings file atomically: a crash leaves the old or the new file, never a mix."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=".settings-", suffix=".tmp", dir=data_dir)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=2, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path_in(data_dir))
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(data_dir, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself survives a power cut
    finally:
        os.close(dir_fd)


def _stored_form(spec: Field, value: Any) -> Any:
    """A parsed value as JSON can keep it (paths as text)."""
    return str(value) if isinstance(value, Path) else value


def parse_change(key: str, raw: Any) -> Any:
    """Validate one change by the FIELDS rules; None means "forget the stored value"."""
    spec = FIELDS_BY_KEY.get(key)
    if spec is None:
        close = difflib.get_close_matches(key, FIELDS_BY_KEY, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise SettingsError(f"unknown setting '{key[:64]}'{hint}")
    if key in FIXED_KEYS:
        raise SettingsError(f"{key}: cannot be changed here (set it in the TOML file or OHM_{key.upper()})")
    if raw is None:
        return None
    if isinstance(raw, list | dict):
        raise SettingsError(f"{key}: must be a single value, not a JSON {type(raw).__name__}")
    try:
        value = spec.parse(raw)
    except ValueError as exc:
        shown = "(hidden)" if spec.secret else repr(raw)[:64]
        raise SettingsError(f"{key} = {shown}: {exc}") from None
    if key == "api.port" and value == 0:
        # The API (and the BLE service, which talks to it) could not switch itself back on.
        raise SettingsError("api.port = 0 would switch the API off for good; do that in the TOML file or OHM_API_PORT")
    return value


def describe(key: str, running: Config, stored: Mapping[str, Any]) -> dict[str, Any]:
    """One setting for GET /api/settings: value, default, type, help, source; secrets masked."""
    spec = FIELDS_BY_KEY[key]
    value, default = running[key], spec.default
    if spec.secret:
        value = MASK if value else ""
    out: dict[str, Any] = {
        "value": _stored_form(spec, value),
        "default": _stored_form(spec, default),
        "type": TYPE_NAMES.get(spec.type, spec.type.__name__),
        "help": spec.help,
        "source": running.sources.get(key, "default"),
        "applies": "now" if key in LIVE_KEYS else "restart",
        "secret": spec.secret,
    }
    if spec.choices:
        out["choices"] = list(spec.choices)
    if spec.min is not None:
        out["min"] = spec.min
    if spec.max is not None:
        out["max"] = spec.max
    if key in stored:
        out["saved"] = MASK if spec.secret and stored[key] else stored[key]
    if key in FIXED_KEYS:
        out["applies"] = "never"  # not through the API
    return out


class SettingsStore:
    """The settings file of one data directory: stored settings and the owner, changed under one lock."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self._lock = threading.Lock()
        try:
            self._doc = read_file(self.data_dir)
        except ValueError as exc:
            # Keep the damaged file for a person to look at; start empty rather than refuse every change.
            damaged = path_in(self.data_dir).with_suffix(f".damaged-{int(time.time())}")
            try:
                path_in(self.data_dir).replace(damaged)
                log.error("%s; moved aside to %s", exc, damaged.name)
            except OSError as move:
                log.error("%s; could not move it aside (%s): the next change replaces it", exc, move.strerror or move)
            self._doc = {}
        self._doc.setdefault("format", FORMAT)
        self._doc.setdefault("settings", {})

    def stored(self) -> dict[str, Any]:
        """A copy of the stored {key: value} layer."""
        with self._lock:
            return dict(self._doc["settings"])

    def owner(self) -> dict[str, Any] | None:
        """The owner record ({owner, name, initialized_at}) or None before initialisation."""
        with self._lock:
            owner = self._doc.get("owner")
            return dict(owner) if owner else None

    def validate(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Every change parsed, or SettingsError for the first bad one (nothing is applied then)."""
        if not changes:
            raise SettingsError('send at least one setting: {"key": value}')
        parsed: dict[str, Any] = {}
        for key, raw in changes.items():
            spec = FIELDS_BY_KEY.get(key)
            if spec is not None and spec.secret and raw == MASK:
                continue  # the masked value from GET sent back: keep the secret as it is
            parsed[key] = parse_change(key, raw)
        return parsed

    def save_settings(self, parsed: Mapping[str, Any]) -> dict[str, Any]:
        """Store validated values (None removes a stored one) atomically; returns the new stored layer."""
        with self._lock:
            new = dict(self._doc["settings"])
            for key, value in parsed.items():
                if value is None:
                    new.pop(key, None)
                else:
                    new[key] = _stored_form(FIELDS_BY_KEY[key], value)
            write_file(self.data_dir, {**self._doc, "settings": new})
            self._doc["settings"] = new
            return dict(new)

    def set_owner(self, owner: str, name: str | None, *, force: bool, now: float) -> dict[str, Any]:
        """Record the owner once (force replaces one); the name, if given, becomes the `name` setting."""
        owner_text = check_text("owner", owner, OWNER_MAX)
        name_text = None if name is None else check_text("name", name, NAME_MAX)
        with self._lock:
            if self._doc.get("owner") and not force:
                raise OwnerExists(self._doc["owner"]["owner"])
            record = {"owner": owner_text, "name": name_text, "initialized_at": round(now, 3)}
            settings = dict(self._doc["settings"])
            if name_text is not None:
                settings["name"] = name_text
            doc = {**self._doc, "owner": record, "settings": settings}
            write_file(self.data_dir, doc)
            self._doc = doc
            return dict(record)


class OwnerExists(SettingsError):
    """The owner was set already (409 unless forced)."""


def check_text(key: str, value: Any, limit: int) -> str:
    """A trimmed, non-empty, printable text of at most `limit` characters, or SettingsError naming `key`."""
    if not isinstance(value, str):
        raise SettingsError(f"{key}: must be text")
    text = value.strip()
    if not text:
        raise SettingsError(f"{key}: must not be empty")
    if len(text) > limit:
        raise SettingsError(f"{key}: at most {limit} characters")
    if not text.isprintable():
        raise SettingsError(f"{key}: control characters are not allowed")
    return text


def running_with(config: Config, parsed: Mapping[str, Any]) -> tuple[Config, list[str]]:
    """A copy of the running config with the live keys of `parsed` applied, and the keys masked by env/CLI.

    A key set by the environment or the command line keeps that value: those layers rank above this one.
    """
    values = dict(config)
    sources = dict(config.sources)
    masked: list[str] = []
    for key, value in parsed.items():
        source = sources.get(key, "default")
        if source.startswith("environment") or source == "command line":
            masked.append(key)
            continue
        if key not in LIVE_KEYS or value is None:
            continue  # a forgotten value: what the lower layers (TOML) say is known after a restart
        values[key] = value
        sources[key] = SOURCE
    return Config(values, sources), masked


def pending_restart(config: Config, stored: Mapping[str, Any]) -> list[str]:
    """Keys whose stored value differs from what the running gateway uses (they need a restart)."""
    out = []
    for f in FIELDS:
        if f.key in stored and f.key not in LIVE_KEYS:
            source = config.sources.get(f.key, "default")
            if source.startswith("environment") or source == "command line":
                continue  # masked by a higher layer: a restart would not change it either
            if _stored_form(f, config[f.key]) != stored[f.key]:
                out.append(f.key)
        elif f.key not in stored and config.sources.get(f.key) == SOURCE:
            out.append(f.key)  # a stored value was removed; the running one came from it
    return out
