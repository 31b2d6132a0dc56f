"""The one route table: every API endpoint, its method, auth level and summary (the OpenAPI document reads it too).

Handlers run on waitress threads. They only read snapshots and stats, or call the services'
non-blocking methods and wait (bounded) on an Event that the engine task `then` sets.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flask import Response, jsonify, request

import server
from server.engine import EngineStopped, Outcome

from .errors import ApiError
from .logbuffer import FILTER_LEVELS, KEEP, LEVELS
from .metrics import render_metrics

log = logging.getLogger("ohm.api")
IO_TIMEOUT = 10.0  # s a handler waits for a device answer before giving up with 504


@dataclass
class ApiContext:
    """What handlers see: the gateway and when the API started."""

    gateway: Any
    started: float = field(default_factory=time.monotonic)
    io_timeout: float = IO_TIMEOUT
    logs: Any = None  # RingLog, set by attach (None: the logs endpoints answer 503)
    notes: Any = None  # Notifications fed by the bus, set by attach (None: 503)

    def log_ring(self) -> Any:
        """The recent-records handler, or 503 if the API runs without one."""
        if self.logs is None:
            raise ApiError(503, "no log buffer in this process")
        return self.logs

    def notifications(self) -> Any:
        """The notification list, or 503 if the API runs without one."""
        if self.notes is None:
            raise ApiError(503, "no notifications in this process")
        return self.notes

    def service(self, name: str) -> Any:
        """A running service by name, or 503 if it is not there."""
        svc = (getattr(self.gateway, "services", None) or {}).get(name)
        if svc is None:
            raise ApiError(503, f"the {name} service is not running")
        return svc


@dataclass(frozen=True)
class Route:
    """One endpoint: method, Flask path, auth level (public/read/admin), summary, handler, request body schema."""

    method: str
    path: str
    auth: str
    summary: str
    handler: Callable[..., Any]
    body: Mapping[str, Any] | None = None
    status: int = 200
    query: Mapping[str, Any] | None = None  # {name: JSON schema} of optional query parameters


# ---- helpers ------------------------------------------------------------------------------


def json_body() -> dict[str, Any]:
    """The request body as a JSON object (400 if malformed, 413 past the size limit)."""
    raw = request.get_data(cache=True)  # raises RequestEntityTooLarge past MAX_CONTENT_LENGTH
    if not raw:
        raise ApiError(400, "a JSON object body is required", "bad_json")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"body is not valid JSON: {exc}", "bad_json") from None
    if not isinstance(data, dict):
        raise ApiError(400, "body must be a JSON object", "bad_json")
    return data


def wait(start: Callable[[Callable[[Outcome[Any]], None]], None], timeout: float = IO_TIMEOUT) -> Outcome[Any]:
    """Start a non-blocking service call with a `then` and wait (bounded) for its outcome on this thread."""
    done = threading.Event()
    box: list[Outcome[Any]] = []

    def then(outcome: Outcome[Any]) -> None:
        box.append(outcome)
        done.set()

    try:
        start(then)
    except EngineStopped:
        raise ApiError(503, "the gateway is shutting down") from None
    if not done.wait(timeout):
        raise ApiError(504, f"no answer within {timeout:g} s")
    return box[0]


def _refuse(call: Callable[[], Any]) -> Any:
    """Run a service call, turning its validation errors into 422."""
    from server.devices.store import DeviceConfigError

    try:
        return call()
    except (
        DeviceConfigError,
        ValueError,
        TypeError,
    ) as exc:  # WriteRejected is a ValueError; TypeError: odd JSON types
        raise ApiError(422, str(exc)) from None


JSON_TYPES: dict[str, Callable[[Any], bool]] = {
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
}


def check_types(data: Mapping[str, Any], schema: Mapping[str, Any]) -> None:
    """422 naming the first field whose JSON type differs from the schema (unknown fields are the service's call)."""
    for key, value in data.items():
        spec = schema["properties"].get(key)
        if spec is None or "type" not in spec:
            continue  # no single JSON type (e.g. a string or a list): the shared parser checks it
        if not JSON_TYPES[spec["type"]](value):
            raise ApiError(422, f"{key}: must be a JSON {spec['type']}, got {type(value).__name__}")
        if "enum" in spec and value not in spec["enum"]:
            raise ApiError(422, f"{key}: must be one of {', '.join(map(str, spec['enum']))}")


def query_args(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The request's query parameters checked against a route's `query` schemas (422 naming the first bad one)."""
    unknown = sorted(set(request.args) - set(schema))
    if unknown:
        raise ApiError(422, f"unknown query parameter {unknown[0][:64]!r} (expected: {', '.join(schema)})")
    out: dict[str, Any] = {}
    for key, spec in schema.items():
        raw = request.args.get(key)
        if raw is None:
            continue
        value: Any = raw
        if spec["type"] == "integer":
            try:
                value = int(raw)
            except ValueError:
                raise ApiError(422, f"{key}: must be an integer, got {raw[:64]!r}") from None
            if not spec.get("minimum", value) <= value <= spec.get("maximum", value):
                raise ApiError(422, f"{key}: must be {spec['minimum']}-{spec['maximum']}, got {value}")
        if "enum" in spec and value not in spec["enum"]:
            raise ApiError(422, f"{key}: must be one of {', '.join(map(str, spec['enum']))}")
        out[key] = value
    return out


def check_profile(data: Mapping[str, Any]) -> None:
    """422 unless `profile` names a shipped profile (the name becomes a file path further down)."""
    from server.devices.meters import meter_profile_names
    from server.devices.profile import profile_names

    if "profile" in data:
        known = profile_names() + meter_profile_names()
        if data["profile"] not in known:
            raise ApiError(422, f"profile: no profile {str(data['profile'])[:64]!r} (known: {', '.join(known)})")


def _device(ctx: ApiContext, device_id: str) -> Any:
    svc = ctx.service("devices")
    try:
        return svc.get(device_id)
    except KeyError:
        raise ApiError(404, f"no device {device_id!r}") from None


def _gateway_name(ctx: ApiContext) -> str:
    name = ctx.gateway.config.get("name") or ""
    if name:
        return str(name)
    signer = (ctx.gateway.services or {}).get("identity")
    return f"Ohm-{signer.device_id.removeprefix('ohm-')[:8]}" if signer is not None else "Ohm"


def _snapshot_dict(snap: Any) -> dict[str, Any]:
    return {
        "device_id": snap.device_id,
        "ts": snap.ts,
        "online": snap.online,
        "profile": snap.profile,
        "error": snap.error,
        "points": {
            name: {"value": p.value, "unit": p.unit, "quality": getattr(p.quality, "value", str(p.quality))}
            for name, p in snap.points.items()
        },
    }


def _stats(ctx: ApiContext, name: str) -> dict[str, Any] | None:
    svc = (ctx.gateway.services or {}).get(name)
    stats = getattr(svc, "stats", None)
    return stats() if callable(stats) else None


# ---- handlers -----------------------------------------------------------------------------


def hello(ctx: ApiContext) -> Any:
    """Liveness for people: a greeting."""
    return {"message": "hello from the Ohm gateway"}


def version(ctx: ApiContext) -> Any:
    """Software version."""
    return {"version": server.__version__}


def uptime(ctx: ApiContext) -> Any:
    """Seconds since the engine and the API started."""
    return {
        "engine_s": round(ctx.gateway.engine.stats()["uptime_s"], 3),
        "api_s": round(time.monotonic() - ctx.started, 3),
    }


def name(ctx: ApiContext) -> Any:
    """The gateway's human name."""
    return {"name": _gateway_name(ctx)}


def state(ctx: ApiContext) -> Any:
    """Gateway state, recent transitions, engine stats, uplink and outbox state."""
    gw = ctx.gateway
    history = [
        {"at": t.at, "event": t.event, "before": t.before, "after": t.after, "ok": t.ok} for t in list(gw.history)[-20:]
    ]
    return {
        "state": gw.state.value,
        "transitions": history,
        "engine": gw.engine.stats(),
        "uplink": _stats(ctx, "uplink"),
        "outbox": _stats(ctx, "outbox"),
    }


def crypto(ctx: ApiContext) -> Any:
    """Gateway id and public key (there is no signing endpoint, on purpose)."""
    signer = ctx.service("identity")
    return {
        "id": signer.device_id,
        "backend": signer.backend,
        "public_pem": signer.public_pem(),
        "jwk": signer.public_jwk(),
    }


def devices_list(ctx: ApiContext) -> Any:
    """Every configured device with its health."""
    return {"devices": ctx.service("devices").list()}


def devices_add(ctx: ApiContext) -> Any:
    """Add a device (validated; 409 if the id exists); answers once it is stored."""
    data = json_body()
    check_types(data, DEVICE_BODY)
    check_profile(data)
    svc = ctx.service("devices")
    dev_id = data.get("id")
    if isinstance(dev_id, str):
        try:
            svc.get(dev_id)
        except KeyError:
            pass
        else:
            raise ApiError(409, f"device {dev_id!r} exists already (PATCH it instead)")
    holder: list[Any] = []
    outcome = wait(lambda then: holder.append(_refuse(lambda: svc.add(data, then))), ctx.io_timeout)
    if not outcome.ok:
        raise ApiError(503, "the device list could not be saved; see the gateway log")
    return {"device": holder[0].as_dict()}


def device_get(ctx: ApiContext, device_id: str) -> Any:
    """One device with its health."""
    cfg = _device(ctx, device_id)
    return {"device": {**cfg.as_dict(), "health": ctx.service("devices").health(device_id)}}


def device_change(ctx: ApiContext, device_id: str) -> Any:
    """Change fields of a device (its poller restarts)."""
    data = json_body()
    _device(ctx, device_id)
    check_types(data, DEVICE_PATCH)
    check_profile(data)
    svc = ctx.service("devices")
    holder: list[Any] = []
    outcome = wait(lambda then: holder.append(_refuse(lambda: svc.change(device_id, data, then))), ctx.io_timeout)
    if not outcome.ok:
        raise ApiError(503, "the device list could not be saved; see the gateway log")
    return {"device": holder[0].as_dict()}


def device_delete(ctx: ApiContext, device_id: str) -> Any:
    """Stop polling a device and forget it."""
    _device(ctx, device_id)
    svc = ctx.service("devices")
    outcome = wait(lambda then: _refuse(lambda: svc.remove(device_id, then)), ctx.io_timeout)
    if not outcome.ok:
        raise ApiError(503, "the device list could not be saved; see the gateway log")
    return {"deleted": device_id}


def device_readings(ctx: ApiContext, device_id: str) -> Any:
    """The latest snapshot of a device (null before its first poll)."""
    _device(ctx, device_id)
    snap = ctx.service("devices").snapshot(device_id)
    return {"device_id": device_id, "snapshot": None if snap is None else _snapshot_dict(snap)}


def _command_args(parse: Callable[[Mapping[str, Any]], dict[str, Any]], schema: Mapping[str, Any]) -> dict[str, Any]:
    from server.uplink.commands import CommandFailed

    data = json_body()
    check_types(data, schema)  # JSON types first: the shared parsers assume hashable scalars
    try:
        return parse(data)
    except CommandFailed as exc:
        raise ApiError(422, str(exc)) from None


def _device_io(ctx: ApiContext, start: Callable[[Any, Callable[[Outcome[Any]], None]], None]) -> Any:
    from server.devices.commands import io_reason

    svc = ctx.service("devices")
    outcome = wait(lambda then: _refuse(lambda: start(svc, then)), ctx.io_timeout)
    if not outcome.ok:
        raise ApiError(502, io_reason(outcome.error))
    return outcome.value


def _enabled(ctx: ApiContext, device_id: str) -> None:
    if not _device(ctx, device_id).enabled:
        raise ApiError(409, f"device {device_id!r} is disabled")


def modbus_read(ctx: ApiContext) -> Any:
    """Read registers of a configured device (same checks as the backend's modbus.read)."""
    from server.devices.commands import parse_read

    a = _command_args(parse_read, READ_BODY)
    _enabled(ctx, a["device"])
    value = _device_io(
        ctx,
        lambda svc, then: svc.read_raw(
            a["device"], a["fc"], a["address"], a["count"], then, type=a["type"], words=a["words"]
        ),
    )
    return {"device": a["device"], "fc": a["fc"], "address": a["address"], **value}


def modbus_write(ctx: ApiContext) -> Any:
    """Write a writable point of a device's profile (same checks as the backend's modbus.write)."""
    from server.devices.commands import parse_write

    a = _command_args(parse_write, WRITE_BODY)
    _enabled(ctx, a["device"])
    value = _device_io(
        ctx,
        lambda svc, then: svc.write_raw(
            a["device"], a["address"], a["value"], then, registers=a["registers"], fc=a["fc"]
        ),
    )
    return {"device": a["device"], "address": a["address"], **value}


def scan_start(ctx: ApiContext) -> Any:
    """Start a discovery scan (same checks as the backend's devices.scan); answers its id at once."""
    from server.devices.commands import parse_scan

    a = _command_args(parse_scan, SCAN_BODY)
    svc = ctx.service("devices")
    scan_id = _refuse(lambda: svc.scan(**a))
    return {"scan_id": scan_id, **svc.scan_status(scan_id)}


def _scan_status(ctx: ApiContext, scan_id: str) -> dict[str, Any]:
    try:
        return {"scan_id": scan_id, **ctx.service("devices").scan_status(scan_id)}
    except KeyError:
        raise ApiError(404, f"no scan {scan_id!r}") from None


def scan_get(ctx: ApiContext, scan_id: str) -> Any:
    """Progress of a scan and what it found so far."""
    return _scan_status(ctx, scan_id)


def scan_cancel(ctx: ApiContext, scan_id: str) -> Any:
    """Cancel a scan (the probe in flight finishes; the rest are skipped)."""
    _scan_status(ctx, scan_id)
    ctx.service("devices").cancel_scan(scan_id)
    return _scan_status(ctx, scan_id)


def logs_get(ctx: ApiContext) -> Any:
    """Recent log records (the last 500 at most), oldest first; `level` is a floor, `limit` the newest N."""
    a = query_args(LOGS_QUERY)
    ring = ctx.log_ring()
    records = ring.recent(a.get("level"), a.get("limit", LOGS_QUERY["limit"]["maximum"]))
    return {"level": logging.getLevelName(logging.getLogger().level).lower(), "records": records}


def logs_level(ctx: ApiContext) -> Any:
    """Change the root log level at run time (not saved: a restart goes back to the log_level setting)."""
    from .logbuffer import set_root_level

    ctx.log_ring()
    data = json_body()
    check_types(data, LEVEL_BODY)
    if set(data) != {"level"}:
        raise ApiError(422, "level: required, and nothing else")
    before = set_root_level(data["level"])
    log.warning("log level set to %s (was %s) through the API", data["level"], before)
    return {"level": data["level"], "before": before}


def notifications_list(ctx: ApiContext) -> Any:
    """Device events kept for the owner (offline, recovered, outbox_dropped, ...), oldest first."""
    return {"notifications": ctx.notifications().list()}


def notification_dismiss(ctx: ApiContext, note_id: str) -> Any:
    """Dismiss one notification by id."""
    notes = ctx.notifications()
    if not (note_id.isascii() and note_id.isdigit() and len(note_id) < 20 and notes.dismiss(int(note_id))):
        raise ApiError(404, f"no notification {note_id[:64]!r}")
    return {"dismissed": int(note_id)}


def openapi(ctx: ApiContext) -> Any:
    """This API as an OpenAPI 3.1 document."""
    from .openapi import document

    return document()


def health(ctx: ApiContext) -> Any:
    """200 while the engine runs, 503 otherwise (for container health checks)."""
    engine_state = ctx.gateway.engine.state
    body = jsonify({"status": "ok" if engine_state == "running" else "unavailable", "engine": engine_state})
    body.status_code = 200 if engine_state == "running" else 503
    return body


def metrics(ctx: ApiContext) -> Any:
    """Prometheus text format: polls, failures, lateness, outbox depth, uplink state, RSS."""
    return Response(render_metrics(ctx.gateway, rss_bytes()), mimetype="text/plain; version=0.0.4")


def rss_bytes() -> int:
    """Resident set size of this process, from /proc/self/statm (0 where there is no /proc)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


DEVICE_BODY: dict[str, Any] = {
    "type": "object",
    "required": ["id", "profile"],
    "properties": {
        "id": {"type": "string"},
        "profile": {"type": "string"},
        "transport": {
            "type": "string",
            "enum": ["", "tcp", "rtu", "solarman", "p1_serial", "p1_tcp", "homewizard", "envoy"],
        },
        "host": {"type": "string"},
        "port": {"type": "integer"},
        "device": {"type": "string"},
        "baudrate": {"type": "integer"},
        "parity": {"type": "string"},
        "unit_id": {"type": "integer"},
        "logger_serial": {"type": "integer"},
        "interval": {"type": "number"},
        "name": {"type": "string"},
        "enabled": {"type": "boolean"},
        "token": {
            "type": "string",
            "writeOnly": True,
            "description": "Enphase Envoy owner token (firmware 7+); stored 0600, never returned (see token_set)",
        },
        "tls_pin": {
            "type": "string",
            "description": "SHA-256 (hex) of the Envoy's certificate; pinned on first use, '' trusts a new one",
        },
    },
    "additionalProperties": False,
}
DEVICE_PATCH = {**DEVICE_BODY, "required": []}
READ_BODY: dict[str, Any] = {
    "type": "object",
    "required": ["device", "address"],
    "properties": {
        "device": {"type": "string"},
        "fc": {"type": "integer", "enum": [3, 4], "default": 3},
        "address": {"type": "integer", "minimum": 0, "maximum": 65535},
        "count": {"type": "integer", "minimum": 1, "maximum": 125},
        "type": {"type": "string"},
        "words": {"type": "string", "enum": ["big", "little"]},
    },
    "additionalProperties": False,
}
WRITE_BODY: dict[str, Any] = {
    "type": "object",
    "required": ["device", "address"],
    "properties": {
        "device": {"type": "string"},
        "address": {"type": "integer", "minimum": 0, "maximum": 65535},
        "value": {"type": "number"},
        "registers": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 65535}, "maxItems": 4},
        "fc": {"type": "integer", "enum": [6, 16]},
    },
    "additionalProperties": False,
}
SCAN_BODY: dict[str, Any] = {
    "type": "object",
    "properties": {
        "hosts": {
            "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
            "description": "'a.b.c.d', 'a.b.c.d-N', 'a.b.c.0/24' or a list of them (or give serial)",
        },
        "ports": {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 65535}, "maxItems": 64},
        "serial": {"type": "array", "items": {"type": "string"}},
        "bauds": {"type": "array", "items": {"type": "integer", "minimum": 1200, "maximum": 921600}, "maxItems": 8},
        "units": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 247}, "maxItems": 16},
        "rate": {"type": "number", "exclusiveMinimum": 0, "maximum": 100},
        "timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": 5},
        "mdns": {"type": "boolean", "description": "also list HomeWizard, Envoy and Ohm gateways announced via mDNS"},
    },
    "additionalProperties": False,
}
LOGS_QUERY: dict[str, Any] = {
    "level": {"type": "string", "enum": list(FILTER_LEVELS)},
    "limit": {"type": "integer", "minimum": 1, "maximum": KEEP},
}
LEVEL_BODY: dict[str, Any] = {
    "type": "object",
    "required": ["level"],
    "properties": {"level": {"type": "string", "enum": list(LEVELS)}},
    "additionalProperties": False,
}

# Modules that contribute their own `ROUTES` tuple (one line per area, so areas never edit each other's tables).
ROUTE_MODULES: tuple[str, ...] = (
    "server.api.actions_routes",
    "server.api.dashboard_routes",
    "server.api.system_routes",
)


def all_routes() -> tuple[Route, ...]:
    """The core table plus every area's table from ROUTE_MODULES (what Flask serves and OpenAPI documents)."""
    import importlib

    extra: list[Route] = []
    for module in ROUTE_MODULES:
        extra.extend(importlib.import_module(module).ROUTES)
    return ROUTES + tuple(extra)


ROUTES: tuple[Route, ...] = (
    Route("GET", "/api/hello", "public", "A greeting (no token needed)", hello),
    Route("GET", "/api/version", "read", "Software version", version),
    Route("GET", "/api/uptime", "read", "Engine and API uptime in seconds", uptime),
    Route("GET", "/api/name", "read", "The gateway's name", name),
    Route("GET", "/api/state", "read", "Gateway state, transitions, engine, uplink and outbox stats", state),
    Route("GET", "/api/crypto", "read", "Gateway id and public key (PEM and JWK); no signing", crypto),
    Route("GET", "/api/devices", "read", "Configured devices with health", devices_list),
    Route("POST", "/api/devices", "admin", "Add a device", devices_add, DEVICE_BODY, 201),
    Route("GET", "/api/devices/<device_id>", "read", "One device with health", device_get),
    Route("PATCH", "/api/devices/<device_id>", "admin", "Change a device", device_change, DEVICE_PATCH),
    Route("DELETE", "/api/devices/<device_id>", "admin", "Remove a device", device_delete),
    Route("GET", "/api/devices/<device_id>/readings", "read", "Latest snapshot of a device", device_readings),
    Route("POST", "/api/modbus/read", "read", "Read registers of a configured device", modbus_read, READ_BODY),
    Route("POST", "/api/modbus/write", "admin", "Write a writable point of a device", modbus_write, WRITE_BODY),
    Route("POST", "/api/scan", "admin", "Start a discovery scan", scan_start, SCAN_BODY, 202),
    Route("GET", "/api/scan/<scan_id>", "read", "Progress and findings of a scan", scan_get),
    Route("DELETE", "/api/scan/<scan_id>", "admin", "Cancel a scan", scan_cancel),
    Route("GET", "/api/logs", "read", "Recent log records", logs_get, query=LOGS_QUERY),
    Route("PUT", "/api/logs/level", "admin", "Change the root log level at run time", logs_level, LEVEL_BODY),
    Route("GET", "/api/notifications", "read", "Device events kept for the owner", notifications_list),
    Route("DELETE", "/api/notifications/<note_id>", "admin", "Dismiss a notification", notification_dismiss),
    Route("GET", "/api/openapi.json", "public", "This document", openapi),
    Route("GET", "/health", "public", "200 while the engine runs, 503 otherwise", health),
    Route("GET", "/metrics", "read", "Prometheus metrics", metrics),
)
