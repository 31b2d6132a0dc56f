"""Discovery: find Modbus devices on given hosts/ports or serial lines and suggest a profile.

A scan is a queue of probes run one after another on a lane of its own, started at most `rate`
per second, each in a worker; it reports progress after every probe and can be cancelled
at any time (probes not yet started are skipped). Nothing here blocks the engine.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from server.bus import Quality
from server.engine import Engine, Outcome, TaskClass

from . import sunspec
from .codec import decode
from .plan import plan_profile
from .profile import Profile, load_all
from .transport import Client, DeviceIOError, ExceptionReply, Link, open_client

log = logging.getLogger("ohm.devices.discovery")

DEFAULT_PORTS = (502, 1502, 8899)
DEFAULT_UNITS = (1, 3, 126, 247)
DEFAULT_BAUDS = (9600, 19200, 115200)
MAX_TARGETS = 4096


@dataclass
class Found:
    """A device that answered, with what we learned and the best-matching profile."""

    transport: str
    host: str = ""
    port: int = 0
    device: str = ""
    baudrate: int = 0
    unit_id: int = 1
    sunspec: bool = False
    manufacturer: str = ""
    model: str = ""
    serial: str = ""
    profile: str | None = None
    score: float = 0.0  # share of the suggested profile's points that decoded plausibly
    candidates: dict[str, float] = field(default_factory=dict)
    source: str = "probe"  # probe (Modbus / serial scan) or mdns (an announcement on the LAN)
    name: str = ""  # mDNS instance name
    note: str = ""  # what the owner should know before adding it (token needed, API switched off, ...)

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return dict(self.__dict__)


def expand_hosts(spec: str | Iterable[str]) -> list[str]:
    """'127.0.0.1', '127.0.0.1-5', '127.0.0.0/29' or a list of those -> host addresses (capped)."""
    items = [spec] if isinstance(spec, str) else list(spec)
    hosts: list[str] = []
    for item in items:
        item = item.strip()
        try:
            if "/" in item:
                net = ipaddress.ip_network(item, strict=False)
                hosts += [str(h) for h in (net.hosts() if net.num_addresses > 2 else net)]
            elif "-" in item:
                first, _, last = item.rpartition("-")
                base = ipaddress.ip_address(first)
                end = int(last) if last.isdigit() else int(ipaddress.ip_address(last)) - int(base) + base.packed[-1]
                hosts += [str(base + i) for i in range(end - base.packed[-1] + 1)]
            else:
                hosts.append(str(ipaddress.ip_address(item)))
        except ValueError as exc:
            raise ValueError(f"bad host range {item!r}: {exc}") from None
        if len(hosts) > MAX_TARGETS:
            raise ValueError(f"scan at most {MAX_TARGETS} hosts at once")
    return hosts


def serial_ports() -> list[str]:
    """Serial ports present on this machine (USB RS-485 adapters, on-board UARTs)."""
    from serial.tools import list_ports

    return sorted(p.device for p in list_ports.comports())


def score_profile(client: Client, profile: Profile, unit: int) -> float:
    """Share of a profile's points that read and decode as OK at `unit` (0 when nothing answers)."""
    regs: dict[tuple[int, int], int] = {}
    for r in plan_profile(profile):
        try:
            values = client.read(r.fc, r.address, r.count, unit)
        except ExceptionReply:
            continue
        regs.update({(r.fc, r.address + i): v for i, v in enumerate(values)})
    if not regs or not profile.points:
        return 0.0
    points = decode(profile, regs)
    ok = sum(1 for name, p in points.items() if p.quality is Quality.OK and (p.value or not name.endswith("_wh")))
    return ok / len(points)


def probe(link: Link, units: Iterable[int], profiles: dict[str, Profile]) -> list[Found]:
    """Everything found behind one link (blocking; run in a worker)."""
    try:
        client = open_client(link)
    except DeviceIOError:
        return []
    found: list[Found] = []
    try:
        for unit in units:
            item = _probe_unit(client, link, unit, profiles)
            if item is not None:
                found.append(item)
    finally:
        client.close()
    return found


def _probe_unit(client: Client, link: Link, unit: int, profiles: dict[str, Profile]) -> Found | None:
    item = Found(link.transport, link.host, link.port, link.device, link.baudrate if link.device else 0, unit)
    answered = False

    def read(address: int, count: int) -> list[int]:
        nonlocal answered
        try:
            regs = client.read(3, address, count, unit)
        except ExceptionReply:
            answered = True
            raise
        answered = True
        return regs

    try:
        read(sunspec.BASES[0], 2)  # one cheap request first: a silent unit id costs one timeout, not many
    except DeviceIOError:
        return None
    except ExceptionReply:
        pass
    try:
        base = sunspec.find_base(read)
        item.sunspec = True
        models = sunspec.walk(read, base)
        if 1 in models:
            info = sunspec.common_strings(read(models[1] + 2, 66))
            item.manufacturer, item.model, item.serial = info["manufacturer"], info["model"], info["serial"]
    except DeviceIOError:
        if not answered:
            return None  # nobody at this unit id (RS-485 silence / timeout)
    except (sunspec.NotSunSpec, ExceptionReply, ValueError):
        pass
    for key, profile in profiles.items():
        if profile.kind == "raw":
            continue
        if item.sunspec != bool(profile.detect.get("sunspec")):
            continue
        maker = profile.detect.get("manufacturer")
        if item.sunspec:
            if maker and maker.lower() not in item.manufacturer.lower():
                continue
            item.candidates[key] = 1.0 if maker else 0.5  # a maker match beats the generic SunSpec profile
            continue
        if profile.quirks.unit_id != unit:
            continue
        try:
            item.candidates[key] = round(score_profile(client, profile, unit), 3)
            answered = True
        except DeviceIOError:
            continue
    if not answered:
        return None
    if item.candidates:
        best = max(item.candidates.items(), key=lambda kv: kv[1])
        if best[1] >= 0.5:
            item.profile, item.score = best
    if item.profile is None and not item.sunspec:
        item.profile = "generic"
    return item


class Scan:
    """A cancellable, rate-limited scan; progress and results arrive as callbacks on the engine thread."""

    def __init__(
        self,
        engine: Engine,
        links: list[Link],
        *,
        units: Iterable[int] = DEFAULT_UNITS,
        rate: float = 20.0,
        on_progress: Callable[[Scan], None] | None = None,
        on_done: Callable[[Scan], None] | None = None,
        profiles: dict[str, Profile] | None = None,
        extra: Iterable[Callable[[], list[Found]]] = (),
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive (probes per second)")
        self.engine = engine
        self.links = links
        self.units = tuple(units)
        self._extra = list(extra)  # other blocking finders (mDNS browse), run first, one probe each
        self.total = len(links) + len(self._extra)
        self.done = 0
        self.found: list[Found] = []
        self.cancelled = False
        self.finished = threading.Event()
        self._on_progress = on_progress
        self._on_done = on_done
        self._profiles = profiles or load_all()
        self._lane = engine.lane(f"discovery.{id(self)}", max_pending=2)
        self._gap = 1.0 / rate
        self._last_start = -1e9
        self._next = 0

    @classmethod
    def tcp(cls, engine: Engine, hosts: str | Iterable[str], ports: Iterable[int] = DEFAULT_PORTS, **kw: Any) -> Scan:
        """A scan of TCP hosts x ports (Modbus TCP; SunSpec header and unit ids are probed on each)."""
        timeout = kw.pop("timeout", 0.5)
        links = [Link("tcp", host=h, port=p, timeout=timeout) for h in expand_hosts(hosts) for p in ports]
        return cls(engine, links, **kw)

    @classmethod
    def serial(cls, engine: Engine, devices: Iterable[str], bauds: Iterable[int] = DEFAULT_BAUDS, **kw: Any) -> Scan:
        """A scan of serial ports x baud rates (Modbus RTU)."""
        timeout = kw.pop("timeout", 0.3)
        links = [Link("rtu", device=d, baudrate=b, timeout=timeout) for d in devices for b in bauds]
        return cls(engine, links, **kw)

    def start(self) -> Scan:
        """Begin probing (returns at once)."""
        self._submit_next()
        return self

    def cancel(self) -> None:
        """Stop after the probe in flight; the rest are skipped."""
        self.cancelled = True

    def progress(self) -> dict[str, Any]:
        """Probes done / total and what was found so far."""
        return {
            "done": self.done,
            "total": self.total,
            "cancelled": self.cancelled,
            "finished": self.finished.is_set(),
            "found": [f.as_dict() for f in self.found],
        }

    def _submit_next(self) -> None:
        if self.cancelled or self._next >= len(self.links) + len(self._extra):
            self._finish()
            return
        wait = self._last_start + self._gap - self.engine.clock.monotonic()
        if wait > 0:  # the rate limit: probes start at most `rate` per second
            self.engine.call_later(
                wait, lambda now: self._submit_next(), kind="devices.discovery", cls=TaskClass.HOUSEKEEPING
            )
            return
        self._last_start = self.engine.clock.monotonic()
        i = self._next
        self._next += 1
        if i < len(self._extra):
            job = self._extra[i]
        else:
            link = self.links[i - len(self._extra)]
            job = lambda: probe(link, self.units, self._profiles)  # noqa: E731
        self.engine.offload(
            job,
            self._probed,
            kind="devices.discovery",
            cls=TaskClass.HOUSEKEEPING,
            lane=self._lane,
        )

    def _probed(self, outcome: Outcome[list[Found]]) -> None:
        self.done += 1
        if outcome.ok:
            self.found += outcome.value or []
        else:
            log.debug("probe failed: %s", outcome.error)
        if self._on_progress is not None:
            self._on_progress(self)
        self._submit_next()

    def _finish(self) -> None:
        if self.finished.is_set():
            return
        self.finished.set()
        log.info("discovery: %d of %d probed, %d found", self.done, self.total, len(self.found))
        if self._on_done is not None:
            self._on_done(self)
