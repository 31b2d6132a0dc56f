"""The simulator: a pymodbus SimDevice per profile behind a small fault-injecting relay.

TCP: clients talk to a relay on (host, port) that forwards whole MBAP frames to a pymodbus
ModbusTcpServer on a private loopback port - so faults that a server cannot express (drop the
connection, garbage, silence, refusing service) happen on the wire. RTU: pymodbus serves one
end of a pty pair; a relay thread joins it to the pty the client opens, with the same faults.
All simulators in a process share one asyncio loop thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import time
import tty
from collections.abc import Callable

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from server.devices.codec import pack, unpack
from server.devices.profile import Profile, load_profile

from .faults import Fault
from .image import build_image, device_layout
from .model import PlantModel

log = logging.getLogger("ohm.modbus_slave")

_WRITE_FCS = {6: 3, 16: 3}


class _LoopThread:
    """One asyncio loop on a daemon thread, shared by every simulator in the process.

    Simulators hold a reference while they run; the loop and its thread end with the last one.
    """

    _lock = threading.Lock()
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _users = 0

    @classmethod
    def loop(cls) -> asyncio.AbstractEventLoop:
        with cls._lock:
            if cls._loop is None or cls._loop.is_closed():
                loop = asyncio.new_event_loop()
                cls._thread = threading.Thread(target=loop.run_forever, name="modbus-sim", daemon=True)
                cls._thread.start()
                cls._loop = loop
            return cls._loop

    @classmethod
    def acquire(cls) -> None:
        with cls._lock:
            cls._users += 1

    @classmethod
    def release(cls) -> None:
        with cls._lock:
            cls._users -= 1
            if cls._users > 0 or cls._loop is None:
                return
            loop, thread, cls._loop, cls._thread = cls._loop, cls._thread, None, None

        async def drain() -> None:  # end connection handlers cleanly before the loop closes
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(drain(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(5)
        loop.close()

    @classmethod
    def run(cls, coro, timeout: float = 10.0):  # type: ignore[no-untyped-def]
        return asyncio.run_coroutine_threadsafe(coro, cls.loop()).result(timeout)


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Simulator:
    """A simulated device of `profile` on TCP (host, port) or, with rtu=True, on a pty (see `.device`)."""

    def __init__(
        self,
        profile: str | Profile = "sma",
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        unit_ids: tuple[int, ...] | None = None,
        rtu: bool = False,
        clock: Callable[[], float] = time.time,
        fault: Fault | None = None,
        serial: str = "SIM0001",
        rated_w: float = 5000.0,
    ) -> None:
        if host != "localhost" and not host.startswith("127."):
            raise ValueError("the simulator binds loopback addresses only")
        self.profile = load_profile(profile) if isinstance(profile, str) else profile
        self.layout, _ = device_layout(self.profile)
        self.host = host
        self.port = port
        self.unit_ids = unit_ids or (self.profile.quirks.unit_id,)
        self.rtu = rtu
        self.clock = clock
        self.fault = fault or Fault()
        self.serial = serial
        self.model = PlantModel(clock(), rated_w=rated_w)
        self.written: dict[int, int] = {}  # holding registers written by clients
        self.requests = 0
        self.connections = 0
        self.device: str | None = None  # pty path for RTU clients
        self._server: ModbusTcpServer | ModbusSerialServer | None = None
        self._relay: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._pty: _PtyRelay | None = None
        self._image_cache: tuple[float, dict[tuple[int, int], int]] = (-1.0, {})
        self._holds_loop = False

    # ---- registers ----------------------------------------------------------------------

    def image(self) -> dict[tuple[int, int], int]:
        """The register image now (recomputed at most every 50 ms)."""
        now = self.clock()
        at, img = self._image_cache
        if now - at < 0.05 and img:
            return img
        img = build_image(self.profile, self.model.values(now), self.serial)
        for w in self.profile.writable:
            regs = [reg for _, reg in w.composite.registers] if w.composite is not None else [w]
            for reg in regs:
                for i, r in enumerate(pack(reg.default / reg.scale, reg.type, reg.words)):
                    img.setdefault((3, reg.address + i), r)
        for addr, value in self.written.items():
            img[(3, addr)] = value
        self._image_cache = (now, img)
        return img

    def _simdevice(self, unit: int) -> SimDevice:
        img = self.image()
        blocks: dict[int, list[SimData]] = {3: [], 4: []}
        for fc in (3, 4):
            addrs = sorted(a for f, a in img if f == fc)
            start = prev = None
            for a in [*addrs, None]:
                if start is None:
                    start = prev = a
                    continue
                if a is None or a - prev > 32:
                    blocks[fc].append(SimData(start, count=prev - start + 1, values=0, datatype=DataType.REGISTERS))
                    start = a
                prev = a
            if not blocks[fc]:
                blocks[fc].append(SimData(0, datatype=DataType.INVALID))
        bits = [SimData(0, values=[False] * 16, datatype=DataType.BITS)]
        return SimDevice(id=unit, simdata=(bits, list(bits), blocks[3], blocks[4]), action=self._action)

    async def _action(
        self, fc: int, start: int, address: int, count: int, registers: list[int], values: list | None
    ) -> ExcCodes | None:
        self.requests += 1
        if self.fault.mode == "exception" and self.fault.hits():
            return ExcCodes(int(self.fault.value))
        if self.fault.mode == "delay" and self.fault.hits():
            await asyncio.sleep(self.fault.value)
        if values is not None and fc in _WRITE_FCS:
            return self._write(address, [int(v) for v in values])
        table = 4 if fc == 4 else 3
        img = self.image()
        for i in range(count):
            registers[address - start + i] = img.get((table, address + i), 0)
        return None

    def _write(self, address: int, values: list[int]) -> ExcCodes | None:
        spec = self.profile.writable_point(address)
        if spec is None or len(values) != spec.count:
            return ExcCodes.ILLEGAL_ADDRESS
        for i, v in enumerate(values):
            self.written[address + i] = v
        if spec.name == "control.power_limit_pct":
            self.model.limit_pct = max(0.0, min(100.0, values[0] * spec.scale))
        self._image_cache = (-1.0, {})
        self._follow_composites(address)
        return None

    def _follow_composites(self, address: int) -> None:
        """The battery follows its composite point: forced charge/discharge as the registers now say."""
        for w in self.profile.writable:
            if w.composite is None or w.name != "control.battery_power_w":
                continue
            if not any(reg.address == address for _, reg in w.composite.registers):
                continue
            img = self.image()
            got = {
                role: unpack([img.get((3, reg.address + i), 0) for i in range(reg.count)], reg.type, reg.words)
                * reg.scale
                for role, reg in w.composite.registers
            }
            value = w.composite.decode(got)
            # A state no sequence describes (half-way through a sequence) is the inverter's own mode, as on the device.
            self.model.force_battery(value if value else None, self.clock())
            self._image_cache = (-1.0, {})  # the image just built still shows the battery before the command

    # ---- lifecycle ------------------------------------------------------------------------

    def start(self) -> Simulator:
        """Start serving; returns self (port/device filled in)."""
        devices = [self._simdevice(u) for u in self.unit_ids]
        _LoopThread.acquire()
        self._holds_loop = True
        try:
            return self._start(devices)
        except BaseException:
            self.stop()
            raise

    def _start(self, devices: list[SimDevice]) -> Simulator:
        if self.rtu:
            self._pty = _PtyRelay(self.fault, self.unit_ids)
            self.device = self._pty.client_path
            path = self._pty.server_path

            async def serial() -> ModbusSerialServer:
                server = ModbusSerialServer(
                    devices, framer=FramerType.RTU, port=path, baudrate=115200, ignore_missing_devices=True
                )
                await server.serve_forever(background=True)
                return server

            self._server = _LoopThread.run(serial())
            self._pty.start()
            return self
        inner = _free_port()

        async def tcp() -> ModbusTcpServer:
            # ignore_missing_devices: an unknown unit id gets no answer, like a real RS-485 bridge
            server = ModbusTcpServer(devices, address=("127.0.0.1", inner), ignore_missing_devices=True)
            await server.serve_forever(background=True)
            return server

        self._server = _LoopThread.run(tcp())
        self._inner = inner
        self._relay = _LoopThread.run(asyncio.start_server(self._serve_client, self.host, self.port))
        self.port = self._relay.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        """Stop serving and close every connection."""
        if self._relay is not None:
            relay, self._relay = self._relay, None
            _LoopThread.run(self._close_relay(relay))
        if self._server is not None:
            server, self._server = self._server, None
            with contextlib.suppress(Exception):
                _LoopThread.run(server.shutdown())
        if self._pty is not None:
            self._pty.stop()
            self._pty = None
        if self._holds_loop:
            self._holds_loop = False
            _LoopThread.release()

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def set_fault(self, fault: Fault | None) -> None:
        """Change the fault mode at run time (None = healthy)."""
        self.fault = fault or Fault()
        if self._pty is not None:
            self._pty.fault = self.fault
        if self.fault.mode in ("down", "drop"):
            self.disconnect_all()

    def disconnect_all(self) -> None:
        """Close every client connection now (a device reboot)."""
        if self._relay is None:
            return
        loop = _LoopThread.loop()
        for w in list(self._writers):
            loop.call_soon_threadsafe(w.close)

    async def _close_relay(self, relay: asyncio.base_events.Server) -> None:
        relay.close()
        for w in list(self._writers):
            w.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(relay.wait_closed(), 2)

    # ---- TCP relay ------------------------------------------------------------------------

    async def _serve_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.fault.is_down():
            writer.close()
            return
        self._writers.add(writer)
        up_r = up_w = None
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self._inner)
            while True:
                head = await reader.readexactly(7)
                body = await reader.readexactly(max(0, int.from_bytes(head[4:6], "big") - 1))
                fault = self.fault
                if fault.is_down() or (fault.mode == "drop" and fault.hits()):
                    break
                if head[6] not in self.unit_ids or (fault.mode == "silent" and fault.hits()):
                    continue  # pymodbus answers unknown ids with exception 4; a real device stays silent
                if fault.mode == "garbage" and fault.hits():
                    writer.write(fault.garbage())
                    await writer.drain()
                    continue
                up_w.write(head + body)
                rhead = await up_r.readexactly(7)
                rbody = await up_r.readexactly(max(0, int.from_bytes(rhead[4:6], "big") - 1))
                writer.write(rhead + rbody)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
            if up_w is not None:
                up_w.close()


class _PtyRelay:
    """Two pty pairs joined by a thread: pymodbus opens one end, the client the other; faults in between."""

    def __init__(self, fault: Fault, unit_ids: tuple[int, ...]) -> None:
        self.fault = fault
        self.unit_ids = unit_ids
        self._srv_master, srv_slave = os.openpty()
        self._cli_master, cli_slave = os.openpty()
        for fd in (srv_slave, cli_slave):
            tty.setraw(fd)
        self.server_path = os.ttyname(srv_slave)
        self.client_path = os.ttyname(cli_slave)
        self._slaves = (srv_slave, cli_slave)  # kept open so the masters never see EOF
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="modbus-sim-pty", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        import select

        fds = [self._cli_master, self._srv_master]
        while not self._stop.is_set():
            ready, _, _ = select.select(fds, [], [], 0.1)
            for fd in ready:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    return
                fault = self.fault
                if fd == self._cli_master:  # request from the client
                    if fault.is_down() or (fault.mode in ("silent", "drop") and fault.hits()):
                        continue
                    if data and data[0] not in self.unit_ids:
                        continue  # another slave's frame: a real RS-485 device stays silent
                    if fault.mode == "garbage" and fault.hits():
                        os.write(self._cli_master, fault.garbage())
                        continue
                    os.write(self._srv_master, data)
                else:
                    os.write(self._cli_master, data)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)
        for fd in (self._srv_master, self._cli_master, *self._slaves):
            with contextlib.suppress(OSError):
                os.close(fd)
