"""DSMR P1 telegrams (DSMR 2.2 to 5.0, Belgian/Luxembourg e-MUCS): framing, CRC16 and OBIS parsing.

Pure functions, no I/O. A telegram runs from '/' to '!' and, from DSMR 4 on, a CRC16 (IBM/ARC,
polynomial 0xA001, init 0) over everything from '/' up to and including '!', as four hex digits.
Which OBIS codes become which readings is data: the `dsmr` meter profile (profiles/meters/dsmr.yaml).

Why not the `dsmr_parser` library: it would pull seven packages onto the Pi (dlms_cosem, asn1crypto,
attrs, dateutil, serialx, Tailer, typing-extensions) for encrypted meters we do not target, it wants
the caller to pick the DSMR version up front, it logs every odd line at ERROR with a traceback (we log
a failure once), and we need our own OBIS -> canonical-point table anyway. Framing, CRC and the
OBIS line grammar are small and fully covered by the recorded telegrams in tests/fixtures/dsmr.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from types import MappingProxyType

MAX_TELEGRAM = 16 * 1024  # the longest real telegrams (e-MUCS with 13 months of peaks) are ~2 KB
GAS, WATER = 3, 7  # M-Bus device types (EN 13757-3) on channels 0-1 .. 0-4

_LINE = re.compile(r"^(\d{1,3}-\d{1,3}:\d{1,3}\.\d{1,3}\.\d{1,3})((?:\([^()]*\))+)$")
_GROUP = re.compile(r"\(([^()]*)\)")
_NUMBER = re.compile(r"^(-?\d+(?:\.\d+)?)(?:\*(.+))?$")
_STAMP = re.compile(r"^(\d{12})([SW]?)$")
_CET, _CEST = timezone(timedelta(hours=1)), timezone(timedelta(hours=2))
_SCALE = {"kWh": ("Wh", 1000.0), "kW": ("W", 1000.0), "kvarh": ("varh", 1000.0), "kvar": ("var", 1000.0)}


class TelegramError(ValueError):
    """A telegram is corrupt (CRC mismatch, truncated, malformed); the message says how."""


@dataclass(frozen=True)
class Telegram:
    """One checked telegram: header, DSMR version and every OBIS line's value groups."""

    header: str
    version: str  # "2.2/3.0", "4.2", "5.0", "e-MUCS 1.7.1"
    objects: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))
    crc: int | None = None  # None: a DSMR 2.2/3.0 telegram, which carries no CRC

    def number(self, obis: str) -> tuple[float, str] | None:
        """The (value, unit) of a plain numeric OBIS line, converted to W/Wh; None if absent or not a number."""
        groups = self.objects.get(obis)
        if not groups:
            return None
        return parse_number(groups[-1])


def crc16(data: bytes) -> int:
    """CRC16/ARC as DSMR 4+ uses it (reflected polynomial 0xA001, initial value 0)."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def split_frames(buffer: bytes) -> tuple[list[bytes], bytes]:
    """Complete telegrams ('/' .. '!' [CRC] line end) found in `buffer`, and the unfinished rest.

    Bytes before a '/' are noise from joining a stream mid-telegram and are dropped; a '/' before
    the '!' of the telegram it interrupts starts over (the meter restarted or the cable was replugged).
    """
    frames: list[bytes] = []
    pos = 0
    while True:
        start = buffer.find(b"/", pos)
        if start < 0:
            return frames, b""
        end = buffer.find(b"!", start)
        restart = buffer.find(b"/", start + 1, end if end >= 0 else len(buffer))
        if restart >= 0:  # a new telegram began before this one ended: this one is truncated
            frames.append(buffer[start:restart])
            pos = restart
            continue
        if end < 0:
            rest = buffer[start:]
            return frames, rest if len(rest) <= MAX_TELEGRAM else b""
        eol = buffer.find(b"\n", end)
        if eol < 0:
            rest = buffer[start:]
            return frames, rest if len(rest) <= MAX_TELEGRAM else b""
        frames.append(buffer[start : eol + 1])
        pos = eol + 1


def parse_telegram(raw: bytes) -> Telegram:
    """Check and parse one framed telegram; raises TelegramError when it is corrupt."""
    if len(raw) > MAX_TELEGRAM:
        raise TelegramError(f"telegram of {len(raw)} bytes is too long")
    if not raw.startswith(b"/"):
        raise TelegramError("telegram does not start with '/'")
    end = raw.find(b"!")
    if end < 0:
        raise TelegramError("truncated telegram (no '!' end mark)")
    tail = raw[end + 1 :].strip()
    crc: int | None = None
    if tail:
        if not re.fullmatch(rb"[0-9A-Fa-f]{4}", tail):
            raise TelegramError(f"bad CRC field {tail[:8]!r}")
        crc = int(tail, 16)
        actual = crc16(raw[: end + 1])
        if actual != crc:
            raise TelegramError(f"CRC mismatch: telegram says {crc:04X}, content gives {actual:04X}")
    try:
        text = raw[:end].decode("ascii")
    except UnicodeDecodeError:
        raise TelegramError("telegram holds non-ASCII bytes") from None
    lines = text.replace("\r", "").split("\n")
    header = lines[0][1:].strip()
    objects: dict[str, tuple[str, ...]] = {}
    current: str | None = None
    for line in lines[1:]:
        line = line.strip()
        if not line:
            continue
        if line.startswith("(") and current is not None:  # DSMR 2.2/3 put the gas reading on its own line
            objects[current] = objects[current] + tuple(_GROUP.findall(line))
            continue
        match = _LINE.match(line)
        if match is None:
            raise TelegramError(f"malformed line {line[:40]!r}")
        current = match.group(1)
        objects[current] = tuple(_GROUP.findall(match.group(2)))
    version = _version(objects)
    if crc is None and version not in ("2.2/3.0",):
        raise TelegramError(f"DSMR {version} telegram without its CRC (truncated?)")
    return Telegram(header, version, MappingProxyType(objects), crc)


def _version(objects: Mapping[str, tuple[str, ...]]) -> str:
    be = objects.get("0-0:96.1.4")
    if be and be[0]:
        return f"e-MUCS {be[0]}"  # the Belgian version code as sent, e.g. 50217 for e-MUCS P1 1.7.1
    nl = objects.get("1-3:0.2.8")
    if nl and nl[0]:
        v = nl[0]
        return f"{v[0]}.{v[1:]}" if len(v) == 2 and v.isdigit() else v
    return "2.2/3.0"


def parse_number(group: str) -> tuple[float, str] | None:
    """'001581.123*kWh' -> (1581123.0, 'Wh'); '(0230.0*V)' -> (230.0, 'V'); None if not a number."""
    match = _NUMBER.match(group.strip())
    if match is None:
        return None
    value, unit = float(match.group(1)), match.group(2) or ""
    if unit in _SCALE:
        unit, factor = _SCALE[unit]
        value = round(value * factor, 6)
    return value, unit


def parse_stamp(text: str) -> float | None:
    """A DSMR time 'YYMMDDhhmmss' + 'S'/'W' (summer/winter, CET zone) as UTC epoch seconds; None if invalid."""
    match = _STAMP.match(text.strip())
    if match is None:
        return None
    try:
        naive = datetime.strptime(match.group(1), "%y%m%d%H%M%S")
    except ValueError:
        return None
    if naive.year == 1970 or (naive.year == 2000 and naive.month == 1 and naive.day == 1):
        return None  # placeholder stamps of empty M-Bus channels
    flag = match.group(2)
    if flag:
        return naive.replace(tzinfo=_CEST if flag == "S" else _CET).timestamp()
    return _local(naive).timestamp()  # DSMR 2.2/3 stamps carry no flag: Dutch local time


def _local(naive: datetime) -> datetime:
    try:
        from zoneinfo import ZoneInfo

        return naive.replace(tzinfo=ZoneInfo("Europe/Amsterdam"))
    except Exception:  # noqa: BLE001 - no tz database: assume winter time (off by at most an hour)
        return naive.replace(tzinfo=_CET)


@dataclass(frozen=True)
class SubMeter:
    """A gas or water meter behind the electricity meter (M-Bus channel)."""

    channel: int
    kind: int  # GAS, WATER, or 0 when the meter does not say
    value: float  # m3
    ts: float | None  # when the sub-meter was read (UTC epoch seconds)


def sub_meters(tel: Telegram) -> list[SubMeter]:
    """Every M-Bus channel with a reading in m3 (gas and water), in channel order."""
    found: list[SubMeter] = []
    for ch in range(1, 5):
        kind_groups = tel.objects.get(f"0-{ch}:24.1.0")
        kind = int(kind_groups[0]) if kind_groups and kind_groups[0].isdigit() else 0
        reading: tuple[str, str] | None = None
        for code in (f"0-{ch}:24.2.1", f"0-{ch}:24.2.3"):  # NL temperature-corrected, BE not corrected
            groups = tel.objects.get(code)
            if groups and len(groups) >= 2:
                reading = (groups[0], groups[-1])
                break
        old = tel.objects.get(f"0-{ch}:24.3.0")  # DSMR 2.2/3: (stamp)(..)(60)(1)(obis)(unit)(value)
        if reading is None and old and len(old) >= 7:
            reading = (old[0], f"{old[-1]}*{old[-2]}")
        if reading is None:
            continue
        number = parse_number(reading[1])
        if number is None or number[1].lower() != "m3":
            continue  # an empty channel: (00000000) without unit
        found.append(SubMeter(ch, kind, number[0], parse_stamp(reading[0])))
    return found


def meter_time(tel: Telegram) -> float | None:
    """The electricity meter's own clock (0-0:1.0.0) as UTC epoch seconds, when it sends one."""
    groups = tel.objects.get("0-0:1.0.0")
    return parse_stamp(groups[0]) if groups else None


def format_stamp(ts: float) -> str:
    """UTC epoch seconds as a DSMR stamp in CET/CEST (the simulator's inverse of parse_stamp)."""
    when = datetime.fromtimestamp(ts, UTC)
    try:
        from zoneinfo import ZoneInfo

        local = when.astimezone(ZoneInfo("Europe/Amsterdam"))
        flag = "S" if local.dst() else "W"
    except Exception:  # noqa: BLE001 - no tz database: winter time
        local, flag = when.astimezone(_CET), "W"
    return local.strftime("%y%m%d%H%M%S") + flag


def frame(body: str) -> bytes:
    """Add the CRC and line end to a telegram body ending in '!' (for simulators and tests)."""
    data = body.replace("\r\n", "\n").replace("\n", "\r\n").encode("ascii")
    if not data.endswith(b"!"):
        raise ValueError("a telegram body ends with '!'")
    return data + f"{crc16(data):04X}\r\n".encode("ascii")
