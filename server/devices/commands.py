"""Backend commands for devices: `modbus.read`, `modbus.write`, `devices.list`, `devices.scan` and friends.

Each handler runs as a CONTROL task: it checks the arguments at once (refusing with a reason that
names the field), hands the Modbus I/O to the devices service, which runs it on the device's
lane in a worker, and returns DEFERRED; the service's `then` answers with reply()/fail(). The
uplink signs the answer and queues it in the outbox.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from server.engine import Outcome
from server.uplink.commands import DEFERRED, CommandFailed, CommandRequest, register_command

from .profile import TYPES
from .store import DeviceConfigError
from .transport import DeviceIOError, ExceptionReply

MAX_SCAN_TIMEOUT = 5.0  # s per probe; longer would hold a worker for too long per silent target


# ---- argument checks (pure) ---------------------------------------------------------------


def _known_keys(args: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(args) - allowed)
    if unknown:
        raise CommandFailed(f"unknown argument {unknown[0]!r} (expected: {', '.join(sorted(allowed))})")


def _int(args: Mapping[str, Any], key: str, lo: int, hi: int, default: int | None = None) -> int:
    value = args.get(key, default)
    if value is None:
        raise CommandFailed(f"{key}: required (an integer {lo}-{hi})")
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise CommandFailed(f"{key}: must be an integer {lo}-{hi}, got {value!r}")
    return value


def _device(args: Mapping[str, Any]) -> str:
    value = args.get("device")
    if not isinstance(value, str) or not value:
        raise CommandFailed("device: required (a device id, see devices.list)")
    return value


def _int_list(args: Mapping[str, Any], key: str, lo: int, hi: int, *, limit: int = 64) -> list[int] | None:
    value = args.get(key)
    if value is None:
        return None
    ok = isinstance(value, list) and 0 < len(value) <= limit
    if not ok or not all(isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi for v in value):
        raise CommandFailed(f"{key}: must be a list of 1-{limit} integers {lo}-{hi}")
    return value


def parse_read(args: Mapping[str, Any]) -> dict[str, Any]:
    """Checked `modbus.read` arguments: device, fc (3/4, default 3), address, count, type, words."""
    _known_keys(args, {"device", "fc", "address", "count", "type", "words"})
    out: dict[str, Any] = {"device": _device(args)}
    fc = args.get("fc", 3)
    if isinstance(fc, bool) or not isinstance(fc, int) or fc not in (3, 4):
        raise CommandFailed(f"fc: must be 3 (holding) or 4 (input registers), got {fc!r}")
    out["fc"] = fc
    out["address"] = _int(args, "address", 0, 65535)
    kind = args.get("type")
    if kind is not None and (not isinstance(kind, str) or kind not in TYPES):
        raise CommandFailed(f"type: must be one of {', '.join(TYPES)}, got {kind!r}")
    default_count = TYPES[kind] if kind is not None else 1
    out["count"] = _int(args, "count", 1, 125, default_count)
    if kind is not None and TYPES[kind] != out["count"]:
        raise CommandFailed(f"type: {kind} takes {TYPES[kind]} registers, not count={out['count']}")
    if out["address"] + out["count"] > 65536:
        raise CommandFailed("address + count: past register 65535")
    words = args.get("words", "big")
    if not isinstance(words, str) or words not in ("big", "little"):
        raise CommandFailed(f"words: must be 'big' or 'little', got {words!r}")
    out["type"], out["words"] = kind, words
    return out


def parse_write(args: Mapping[str, Any]) -> dict[str, Any]:
    """Checked `modbus.write` arguments: device, address, value or registers, optional fc (6/16)."""
    _known_keys(args, {"device", "address", "value", "registers", "fc"})
    out: dict[str, Any] = {"device": _device(args), "address": _int(args, "address", 0, 65535)}
    value, registers = args.get("value"), args.get("registers")
    if (value is None) == (registers is None):
        raise CommandFailed("give either value (in the point's unit) or registers (raw), not both or neither")
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise CommandFailed(f"value: must be a number, got {value!r}")
    out["value"] = value
    out["registers"] = _int_list(args, "registers", 0, 0xFFFF, limit=4)
    fc = args.get("fc")
    if fc is not None and (isinstance(fc, bool) or not isinstance(fc, int) or fc not in (6, 16)):
        raise CommandFailed(f"fc: must be 6 (one register) or 16 (several), got {fc!r}")
    out["fc"] = fc
    return out


def parse_scan(args: Mapping[str, Any]) -> dict[str, Any]:
    """Checked `devices.scan` arguments: hosts (+ ports) or serial (+ bauds), units, rate, timeout."""
    _known_keys(args, {"hosts", "ports", "serial", "bauds", "units", "rate", "timeout", "mdns"})
    hosts, serial, mdns = args.get("hosts"), args.get("serial"), args.get("mdns", False)
    if not isinstance(mdns, bool):
        raise CommandFailed("mdns: true or false")
    if bool(hosts) == bool(serial) and not (mdns and not hosts):
        raise CommandFailed("give either hosts (e.g. '192.168.1.10-20', with ports) or serial ports, not both")
    out: dict[str, Any] = {"mdns": True} if mdns else {}
    if hosts:
        if isinstance(hosts, list) and all(isinstance(h, str) for h in hosts):
            out["hosts"] = hosts
        elif isinstance(hosts, str):
            out["hosts"] = hosts
        else:
            raise CommandFailed("hosts: a string ('a.b.c.d', 'a.b.c.d-N', 'a.b.c.0/24') or a list of them")
        ports = _int_list(args, "ports", 1, 65535)
        if ports is not None:
            out["ports"] = ports
    elif serial or not mdns:
        if not isinstance(serial, list) or not all(isinstance(s, str) and s.startswith("/dev/") for s in serial):
            raise CommandFailed("serial: a list of serial device paths such as /dev/ttyUSB0")
        out["serial"] = serial
        bauds = _int_list(args, "bauds", 1200, 921600, limit=8)
        if bauds is not None:
            out["bauds"] = bauds
    if ("ports" in args and "hosts" not in out) or ("bauds" in args and "serial" not in out):
        raise CommandFailed("ports go with hosts, bauds with serial")
    units = _int_list(args, "units", 0, 247, limit=16)
    if units is not None:
        out["units"] = units
    for key, hi in (("rate", 100.0), ("timeout", MAX_SCAN_TIMEOUT)):
        value = args.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= hi:
            raise CommandFailed(f"{key}: must be a number above 0 and at most {hi:g}, got {value!r}")
        out[key] = float(value)
    return out


def io_reason(error: BaseException | None) -> str:
    """A failure reason for the backend from a device I/O error (no stack trace, no internals)."""
    if isinstance(error, ExceptionReply):
        return f"device refused: {error}"
    if isinstance(error, DeviceIOError):
        return f"device offline or not answering: {error}"
    return f"device I/O failed: {type(error).__name__}"


# ---- handlers ---------------------------------------------------------------------------


def _service(req: CommandRequest) -> Any:
    services = getattr(req.gateway, "services", None) or {}
    svc = services.get("devices")
    if svc is None:
        raise CommandFailed("devices service is not running")
    return svc


def _check_device(svc: Any, device_id: str) -> None:
    try:
        cfg = svc.get(device_id)
    except KeyError:
        raise CommandFailed(f"unknown device {device_id!r}") from None
    if not cfg.enabled:
        raise CommandFailed(f"device {device_id!r} is disabled")


def _answer(req: CommandRequest, shape: Callable[[Any], Any]) -> Callable[[Outcome[Any]], None]:
    def then(outcome: Outcome[Any]) -> None:
        if outcome.ok:
            req.reply(shape(outcome.value))
        else:
            req.fail(io_reason(outcome.error))

    return then


def _refused(call: Callable[[], Any]) -> Any:
    """Run a service call, turning its validation errors into a refusal with the service's reason."""
    try:
        return call()
    except (DeviceConfigError, ValueError) as exc:  # WriteRejected is a ValueError
        raise CommandFailed(str(exc)) from None


def modbus_read(req: CommandRequest) -> Any:
    """Read registers of a configured device; result {device, fc, address, registers, value}."""
    a = parse_read(req.args)
    svc = _service(req)
    _check_device(svc, a["device"])

    def shape(value: dict[str, Any]) -> dict[str, Any]:
        return {"device": a["device"], "fc": a["fc"], "address": a["address"], **value}

    _refused(
        lambda: svc.read_raw(
            a["device"], a["fc"], a["address"], a["count"], _answer(req, shape), type=a["type"], words=a["words"]
        )
    )
    return DEFERRED


def modbus_write(req: CommandRequest) -> Any:
    """Write a writable point of a device's profile; result {device, address, point, value, registers}."""
    a = parse_write(req.args)
    svc = _service(req)
    _check_device(svc, a["device"])

    def shape(value: dict[str, Any]) -> dict[str, Any]:
        return {"device": a["device"], "address": a["address"], **value}

    _refused(
        lambda: svc.write_raw(
            a["device"], a["address"], a["value"], _answer(req, shape), registers=a["registers"], fc=a["fc"]
        )
    )
    return DEFERRED


def devices_list(req: CommandRequest) -> dict[str, Any]:
    """Every configured device with its health."""
    _known_keys(req.args, set())
    return {"devices": _service(req).list()}


def devices_scan(req: CommandRequest) -> dict[str, Any]:
    """Start a discovery scan (it runs on its own lane); result {scan_id} for devices.scan_status."""
    a = parse_scan(req.args)
    return {"scan_id": _refused(lambda: _service(req).scan(**a))}


def _scan_id(req: CommandRequest) -> str:
    _known_keys(req.args, {"scan_id"})
    scan_id = req.args.get("scan_id")
    if not isinstance(scan_id, str) or not scan_id:
        raise CommandFailed("scan_id: required (from devices.scan)")
    return scan_id


def devices_scan_status(req: CommandRequest) -> dict[str, Any]:
    """Progress of a scan: {scan_id, done, total, cancelled, finished, found: [...]}."""
    scan_id = _scan_id(req)
    try:
        return {"scan_id": scan_id, **_service(req).scan_status(scan_id)}
    except KeyError:
        raise CommandFailed(f"unknown scan {scan_id!r}") from None


def devices_scan_cancel(req: CommandRequest) -> dict[str, Any]:
    """Cancel a running scan (probes not yet started are skipped); result {scan_id, cancelled: true}."""
    scan_id = _scan_id(req)
    try:
        _service(req).cancel_scan(scan_id)
    except KeyError:
        raise CommandFailed(f"unknown scan {scan_id!r}") from None
    return {"scan_id": scan_id, "cancelled": True}


COMMANDS: dict[str, Callable[[CommandRequest], Any]] = {
    "modbus.read": modbus_read,
    "modbus.write": modbus_write,
    "devices.list": devices_list,
    "devices.scan": devices_scan,
    "devices.scan_status": devices_scan_status,
    "devices.scan_cancel": devices_scan_cancel,
}


def register() -> None:
    """Register the device commands with the uplink (idempotent: handlers find the service per request)."""
    for name, handler in COMMANDS.items():
        register_command(name, handler, replace=True)
