"""Device command handlers: argument checks and refusals, without any device I/O (fake clock)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from server.bus import Bus
from server.devices import commands
from server.devices.commands import io_reason, parse_read, parse_scan, parse_write
from server.devices.service import DeviceService
from server.devices.transport import DeviceIOError, ExceptionReply
from server.engine import Engine, FakeClock
from server.uplink.commands import DEFERRED, CommandFailed, CommandRequest, handler_for


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        ({"address": 1}, "device: required"),
        ({"device": "", "address": 1}, "device: required"),
        ({"device": "d"}, "address: required"),
        ({"device": "d", "address": -1}, "address: must be an integer 0-65535"),
        ({"device": "d", "address": 65536}, "address: must be an integer 0-65535"),
        ({"device": "d", "address": "1"}, "address: must be an integer"),
        ({"device": "d", "address": True}, "address: must be an integer"),
        ({"device": "d", "address": 1, "count": 0}, "count: must be an integer 1-125"),
        ({"device": "d", "address": 1, "count": 126}, "count: must be an integer 1-125"),
        ({"device": "d", "address": 65535, "count": 2}, "address + count: past register 65535"),
        ({"device": "d", "address": 1, "fc": 6}, "fc: must be 3 (holding) or 4"),
        ({"device": "d", "address": 1, "fc": 3.0}, "fc: must be 3 (holding) or 4"),
        ({"device": "d", "address": 1, "type": "float128"}, "type: must be one of"),
        ({"device": "d", "address": 1, "type": "int32", "count": 1}, "type: int32 takes 2 registers"),
        ({"device": "d", "address": 1, "words": "middle"}, "words: must be 'big' or 'little'"),
        ({"device": "d", "address": 1, "colour": "red"}, "unknown argument 'colour'"),
    ],
)
def test_bad_read_arguments_are_refused_with_the_field(args: dict[str, Any], reason: str) -> None:
    with pytest.raises(CommandFailed) as exc:
        parse_read(args)
    assert str(exc.value).startswith(reason)


def test_read_defaults() -> None:
    assert parse_read({"device": "d", "address": 30775}) == {
        "device": "d",
        "fc": 3,
        "address": 30775,
        "count": 1,
        "type": None,
        "words": "big",
    }
    assert parse_read({"device": "d", "address": 0, "fc": 4, "type": "uint32"})["count"] == 2  # count from type


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        ({"device": "d", "address": 1}, "give either value"),
        ({"device": "d", "address": 1, "value": 1, "registers": [1]}, "give either value"),
        ({"device": "d", "address": 1, "value": "1"}, "value: must be a number"),
        ({"device": "d", "address": 1, "value": False}, "value: must be a number"),
        ({"device": "d", "address": 1, "registers": [70000]}, "registers: must be a list of 1-4 integers 0-65535"),
        ({"device": "d", "address": 1, "registers": []}, "registers: must be a list"),
        ({"device": "d", "address": 1, "value": 1, "fc": 3}, "fc: must be 6 (one register) or 16"),
        ({"device": "d", "value": 1}, "address: required"),
    ],
)
def test_bad_write_arguments_are_refused_with_the_field(args: dict[str, Any], reason: str) -> None:
    with pytest.raises(CommandFailed) as exc:
        parse_write(args)
    assert str(exc.value).startswith(reason)


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        ({}, "give either hosts"),
        ({"hosts": "127.0.0.1", "serial": ["/dev/ttyUSB0"]}, "give either hosts"),
        ({"hosts": 5}, "hosts: a string"),
        ({"hosts": "127.0.0.1", "ports": [0]}, "ports: must be a list"),
        ({"hosts": "127.0.0.1", "bauds": [9600]}, "ports go with hosts"),
        ({"serial": ["ttyUSB0"]}, "serial: a list of serial device paths"),
        ({"hosts": "127.0.0.1", "units": [300]}, "units: must be a list of 1-16 integers 0-247"),
        ({"hosts": "127.0.0.1", "rate": 0}, "rate: must be a number above 0"),
        ({"hosts": "127.0.0.1", "timeout": 60}, "timeout: must be a number above 0 and at most 5"),
    ],
)
def test_bad_scan_arguments_are_refused(args: dict[str, Any], reason: str) -> None:
    with pytest.raises(CommandFailed) as exc:
        parse_scan(args)
    assert str(exc.value).startswith(reason)


def test_io_errors_become_short_reasons() -> None:
    assert io_reason(DeviceIOError("tcp:127.0.0.1:5 read: timeout")).startswith("device offline or not answering:")
    assert io_reason(ExceptionReply(2, "read")) == "device refused: read: Modbus exception 2 (illegal data address)"
    assert io_reason(RuntimeError("secret detail")) == "device I/O failed: RuntimeError"


# ---- handlers against a real DeviceService on a fake clock (nothing is polled) -----------


def closed_port() -> int:
    """A loopback port nobody listens on, so a connection attempt is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def gateway() -> Iterator[SimpleNamespace]:
    engine = Engine(FakeClock(1000.0))
    svc = DeviceService(engine, Bus(), timeout=0.5)
    port = closed_port()
    svc.add({"id": "inv", "profile": "sma", "host": "127.0.0.1", "port": port})
    svc.add({"id": "off", "profile": "sma", "host": "127.0.0.1", "port": port, "enabled": False})
    commands.register()
    try:
        yield SimpleNamespace(engine=engine, services={"devices": svc})
    finally:
        svc.close()


def run(gateway: Any, name: str, args: dict[str, Any]) -> tuple[Any, list[tuple[bool, Any, str | None]]]:
    answers: list[tuple[bool, Any, str | None]] = []
    req = CommandRequest("c-1", name, args, gateway, lambda ok, result, reason: answers.append((ok, result, reason)))
    handler = handler_for(name)
    assert handler is not None
    return handler(req), answers


@pytest.mark.parametrize(
    ("name", "args", "reason"),
    [
        ("modbus.read", {"device": "nope", "address": 1}, "unknown device 'nope'"),
        ("modbus.write", {"device": "nope", "address": 40915, "value": 1}, "unknown device 'nope'"),
        ("modbus.read", {"device": "off", "address": 1}, "device 'off' is disabled"),
        ("modbus.write", {"device": "inv", "address": 30775, "value": 1}, "address 30775 is not writable on sma"),
        ("modbus.write", {"device": "inv", "address": 40915, "value": 0.5}, "control.power_limit_w: 0.5 is not a"),
        ("modbus.write", {"device": "inv", "address": 40915, "value": 1, "fc": 6}, "fc: control.power_limit_w needs"),
        ("modbus.write", {"device": "inv", "address": 40915, "registers": [1]}, "control.power_limit_w takes 2"),
        ("devices.scan", {"hosts": "300.1.1.1"}, "bad host range '300.1.1.1'"),
        ("devices.scan_status", {}, "scan_id: required"),
        ("devices.scan_status", {"scan_id": "scan-7"}, "unknown scan 'scan-7'"),
        ("devices.scan_cancel", {"scan_id": "scan-7"}, "unknown scan 'scan-7'"),
        ("devices.list", {"x": 1}, "unknown argument 'x'"),
    ],
)
def test_handlers_refuse_before_any_io(gateway: SimpleNamespace, name: str, args: dict[str, Any], reason: str) -> None:
    with pytest.raises(CommandFailed) as exc:
        run(gateway, name, args)
    assert str(exc.value).startswith(reason)


def test_valid_read_is_deferred_until_the_io_answers(gateway: SimpleNamespace) -> None:
    result, answers = run(gateway, "modbus.read", {"device": "inv", "fc": 4, "address": 30775, "type": "int32"})
    assert result is DEFERRED and answers == []  # the answer comes from the lane job's `then`, an engine task
    deadline = time.monotonic() + 5
    while not answers and time.monotonic() < deadline:
        time.sleep(0.01)  # the connection attempt runs in a worker; its `then` waits for the engine
        gateway.engine.run_pending()
    assert answers and answers[0][0] is False
    assert answers[0][2].startswith("device offline or not answering: cannot connect to")


def test_list_and_missing_service(gateway: SimpleNamespace) -> None:
    result, _ = run(gateway, "devices.list", {})
    assert [(d["id"], d["health"]["state"]) for d in result["devices"]][1] == ("off", "disabled")
    with pytest.raises(CommandFailed, match="devices service is not running"):
        run(SimpleNamespace(services={}), "devices.list", {})


def test_commands_are_registered_once_per_name() -> None:
    commands.register()
    commands.register()  # a second gateway in the same process re-registers without error
    assert all(handler_for(name) is fn for name, fn in commands.COMMANDS.items())
