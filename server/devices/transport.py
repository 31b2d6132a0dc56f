"""Blocking Modbus transports (TCP, RTU, Solarman V5) and the Endpoint that owns one per bus.

Everything here runs in worker threads, one job at a time per endpoint (the endpoint's lane),
so a client object is never used by two threads at once and needs no lock of its own.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger("ohm.devices.transport")
# pymodbus logs every timeout at ERROR; pollers log a device going offline once and recovering once,
# so its own chatter is held back unless someone configured the "pymodbus" logger on purpose.
if logging.getLogger("pymodbus").level == logging.NOTSET:
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)


class DeviceIOError(IOError):
    """The device did not answer properly (no connection, timeout, garbage); the link is reset."""


class ExceptionReply(IOError):
    """The device answered with a Modbus exception code; the link itself is fine."""

    def __init__(self, code: int, what: str) -> None:
        super().__init__(f"{what}: Modbus exception {code} ({EXCEPTION_NAMES.get(code, 'unknown')})")
        self.code = code


EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "device failure",
    5: "acknowledge",
    6: "device busy",
    10: "gateway path unavailable",
    11: "gateway target failed to respond",
}


@dataclass(frozen=True, slots=True)
class Link:
    """How to reach a bus: the key of its endpoint (and lane) plus connection settings."""

    transport: str  # tcp, rtu, solarman; meters: p1_serial, p1_tcp, homewizard, envoy
    host: str = ""
    port: int = 502
    device: str = ""  # serial device path for RTU
    baudrate: int = 9600
    parity: str = "N"
    stopbits: int = 1
    logger_serial: int = 0  # Solarman V5 logger stick serial number
    timeout: float = 2.0
    connect_delay: float = 0.0
    secret: str = field(default="", repr=False, compare=False)  # Envoy token: never in a repr or a log line
    tls_pin: str = ""  # expected SHA-256 of the peer's certificate (Envoy); empty: pin on first use

    @property
    def key(self) -> str:
        """One endpoint (and lane) per bus: a TCP endpoint, a serial line, or a logger stick."""
        if self.transport in ("rtu", "p1_serial"):
            return f"{self.transport}:{self.device}"
        if self.transport == "solarman":
            return f"solarman:{self.host}:{self.port}:{self.logger_serial}"
        return f"{self.transport}:{self.host}:{self.port}"


class Client(Protocol):
    """What pollers need from a connected transport."""

    def read(self, fc: int, address: int, count: int, unit: int) -> list[int]:
        """Read `count` registers with function code 3 or 4."""
        ...

    def write(self, address: int, values: list[int], unit: int, fc: int = 16) -> None:
        """Write registers with function code 6 (one) or 16 (several)."""
        ...

    def close(self) -> None:
        """Drop the connection."""
        ...


class PymodbusClient:
    """Modbus TCP or RTU through pymodbus' synchronous clients."""

    def __init__(self, link: Link) -> None:
        from pymodbus.client import ModbusSerialClient, ModbusTcpClient
        from pymodbus.framer import FramerType

        if link.transport == "tcp":
            self._client: Any = ModbusTcpClient(link.host, port=link.port, timeout=link.timeout, retries=0)
            where = f"{link.host}:{link.port}"
        else:
            self._client = ModbusSerialClient(
                link.device,
                framer=FramerType.RTU,
                baudrate=link.baudrate,
                parity=link.parity,
                stopbits=link.stopbits,
                bytesize=8,
                timeout=link.timeout,
                retries=0,
            )
            where = link.device
        self.where = where
        if not self._client.connect():
            self._client.close()
            raise DeviceIOError(f"cannot connect to {where}")

    def read(self, fc: int, address: int, count: int, unit: int) -> list[int]:
        """Read holding (3) or input (4) registers."""
        fn = self._client.read_holding_registers if fc == 3 else self._client.read_input_registers
        return self._call(fn, f"read fc{fc} {address}+{count}", address, count=count, device_id=unit).registers

    def write(self, address: int, values: list[int], unit: int, fc: int = 16) -> None:
        """Write one register (fc 6) or several (fc 16)."""
        if fc == 6:
            self._call(self._client.write_register, f"write fc6 {address}", address, values[0], device_id=unit)
        else:
            self._call(self._client.write_registers, f"write fc16 {address}", address, values, device_id=unit)

    def _call(self, fn: Any, what: str, *args: Any, **kw: Any) -> Any:
        from pymodbus.exceptions import ModbusException

        try:
            reply = fn(*args, **kw)
        except ModbusException as exc:
            raise DeviceIOError(f"{self.where} {what}: {_short(exc)}") from None
        except OSError as exc:
            raise DeviceIOError(f"{self.where} {what}: {exc}") from None
        if reply.isError():
            code = getattr(reply, "exception_code", None)
            if code is None:
                raise DeviceIOError(f"{self.where} {what}: bad reply")
            raise ExceptionReply(code, f"{self.where} {what}")
        if hasattr(reply, "registers") and "read" in what and len(reply.registers) != kw.get("count", 0):
            raise DeviceIOError(f"{self.where} {what}: short reply ({len(reply.registers)} registers)")
        return reply

    def close(self) -> None:
        """Close the socket or serial port."""
        self._client.close()


class SolarmanClient:
    """Modbus RTU frames wrapped in Solarman V5 over TCP (Deye/Sofar logger sticks), via pysolarmanv5."""

    def __init__(self, link: Link, unit: int = 1) -> None:
        from pysolarmanv5 import PySolarmanV5

        self.where = f"{link.host}:{link.port}"
        try:
            self._client = PySolarmanV5(
                link.host, link.logger_serial, port=link.port, mb_slave_id=unit, socket_timeout=link.timeout
            )
        except Exception as exc:  # noqa: BLE001 - pysolarmanv5 raises assorted socket/protocol errors
            raise DeviceIOError(f"cannot connect to logger {self.where}: {exc}") from None

    def read(self, fc: int, address: int, count: int, unit: int) -> list[int]:
        """Read holding (3) or input (4) registers through the logger."""
        self._client.mb_slave_id = unit
        fn = self._client.read_holding_registers if fc == 3 else self._client.read_input_registers
        return self._call(lambda: fn(address, count), f"read fc{fc} {address}+{count}")

    def write(self, address: int, values: list[int], unit: int, fc: int = 16) -> None:
        """Write registers through the logger."""
        self._client.mb_slave_id = unit
        if fc == 6:
            self._call(lambda: self._client.write_holding_register(address, values[0]), f"write fc6 {address}")
        else:
            self._call(lambda: self._client.write_multiple_holding_registers(address, values), f"write {address}")

    def _call(self, fn: Any, what: str) -> Any:
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - umodbus raises per exception code; sockets raise OSError
            code = getattr(exc, "error_code", None)
            if isinstance(code, int):
                raise ExceptionReply(code, f"{self.where} {what}") from None
            raise DeviceIOError(f"{self.where} {what}: {_short(exc)}") from None

    def close(self) -> None:
        """Disconnect from the logger."""
        try:
            self._client.disconnect()
        except Exception:  # noqa: BLE001 - closing a dead socket may fail; it is gone either way
            pass


def _short(exc: BaseException) -> str:
    text = str(exc).replace("Modbus Error: ", "")
    return text.split("\n", 1)[0][:200] or type(exc).__name__


def open_client(link: Link, unit: int = 1) -> Client:
    """Connect a client for `link` (blocking; call in a worker)."""
    if link.transport in ("p1_serial", "p1_tcp"):
        from .p1_transport import P1Client

        return P1Client(link)
    if link.transport in ("homewizard", "envoy"):
        from .http_meters import EnvoyClient, HomeWizardClient

        return HomeWizardClient(link) if link.transport == "homewizard" else EnvoyClient(link)
    if link.transport == "solarman":
        client: Client = SolarmanClient(link, unit)
    else:
        client = PymodbusClient(link)
    if link.connect_delay:
        time.sleep(link.connect_delay)  # Huawei dongles drop requests sent right after connecting
    return client


class Endpoint:
    """One bus or endpoint: its lane (serialising jobs, paced by the request gap) and its client."""

    def __init__(self, link: Link, lane: Any) -> None:
        self.link = link
        self.lane = lane
        self.client: Client | None = None
        self.users = 0

    def ensure(self, unit: int) -> Client:
        """The connected client, connecting first if needed (runs on the lane)."""
        if self.client is None:
            self.client = open_client(self.link, unit)
        return self.client

    def reset(self) -> None:
        """Drop the connection after an I/O error so the next job reconnects (runs on the lane)."""
        client, self.client = self.client, None
        if client is not None:
            try:
                client.close()
            except Exception:
                log.debug("closing %s failed", self.link.key, exc_info=True)
