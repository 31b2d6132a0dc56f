"""Pure register codec: registers <-> raw numbers <-> canonical values, with quality.

No I/O here, so every rule (word order, sentinels, scale factors, ranges) is table-tested.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from types import MappingProxyType

from server.bus import Point, Quality

from .profile import TYPES, PointSpec, Profile

_STRUCT = {
    "int16": "h",
    "uint16": "H",
    "int32": "i",
    "uint32": "I",
    "acc32": "I",
    "float32": "f",
    "int64": "q",
    "uint64": "Q",
    "float64": "d",
}

Registers = Mapping[tuple[int, int], int]  # (function code, address) -> 16-bit register


def _ordered(regs: list[int], words: str, byteorder: str) -> bytes:
    if words == "little":
        regs = regs[::-1]
    return b"".join(r.to_bytes(2, "little" if byteorder == "little" else "big") for r in regs)


def raw_unsigned(regs: list[int], words: str = "big", byteorder: str = "big") -> int:
    """The registers as one unsigned integer in the device's word/byte order (for sentinel checks)."""
    return int.from_bytes(_ordered(regs, words, byteorder), "big")


def unpack(regs: list[int], type_: str, words: str = "big", byteorder: str = "big") -> int | float:
    """Registers -> raw number of `type_`."""
    if len(regs) != TYPES[type_]:
        raise ValueError(f"{type_} needs {TYPES[type_]} registers, got {len(regs)}")
    return struct.unpack(">" + _STRUCT[type_], _ordered(regs, words, byteorder))[0]


def pack(value: int | float, type_: str, words: str = "big", byteorder: str = "big") -> list[int]:
    """Raw number -> registers of `type_` (inverse of unpack)."""
    code = _STRUCT[type_]
    if code not in "fd":
        value = int(value)
    data = struct.pack(">" + code, value)
    regs = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
    if byteorder == "little":
        regs = [((r & 0xFF) << 8) | (r >> 8) for r in regs]
    return regs[::-1] if words == "little" else regs


def decode_point(spec: PointSpec, regs: list[int], sf: int | None = None) -> Point:
    """One point from its registers (and its scale-factor register value, if it has one)."""
    if raw_unsigned(regs, spec.words, spec.bytes) in spec.na:
        return Point(None, spec.unit, Quality.NA)
    raw = unpack(regs, spec.type, spec.words, spec.bytes)
    if isinstance(raw, float) and not math.isfinite(raw):
        return Point(None, spec.unit, Quality.NA)
    if spec.sf is not None:
        if sf is None or sf == -32768 or not -10 <= sf <= 10:
            return Point(None, spec.unit, Quality.NA)
        value = raw * 10.0**sf
    else:
        value = raw
    value = value * spec.scale + spec.add
    value = _tidy(value)
    quality = Quality.OK
    if spec.range is not None and not spec.range[0] <= value <= spec.range[1]:
        quality = Quality.OUT_OF_RANGE
    return Point(value, spec.unit, quality)


def _tidy(value: float) -> float | int:
    """Integral values stay ints; others are rounded to what registers can carry, to hide 0.1*3 noise."""
    if isinstance(value, int):
        return value
    if value.is_integer() and abs(value) < 2**53:
        return int(value)
    return round(value, 6)


def decode(profile: Profile, registers: Registers) -> Mapping[str, Point]:
    """Every point of a (resolved) profile from a register map; points whose registers are missing are n/a."""
    out: dict[str, Point] = {}
    for spec in profile.points:
        regs = [registers.get((spec.fc, spec.address + i)) for i in range(spec.count)]
        if any(r is None for r in regs):
            out[spec.name] = Point(None, spec.unit, Quality.NA)
            continue
        sf = None
        if spec.sf is not None:
            sf_reg = registers.get((spec.fc, spec.sf))
            sf = None if sf_reg is None else unpack([sf_reg], "int16")
        out[spec.name] = decode_point(spec, regs, sf)  # type: ignore[arg-type]
    return MappingProxyType(out)


def encode_point(spec: PointSpec, value: float, sf: int = 0) -> list[int]:
    """Canonical value -> registers (for the simulator and for writes); clamps to the type's range."""
    raw = (value - spec.add) / spec.scale
    if spec.sf is not None:
        raw = raw / 10.0**sf
    if spec.type in ("float32", "float64"):
        return pack(raw, spec.type, spec.words, spec.bytes)
    raw = round(raw)
    bits = 16 * TYPES[spec.type]
    if spec.type.startswith("int"):
        raw = max(-(1 << (bits - 1)), min((1 << (bits - 1)) - 1, raw))
    else:
        raw = max(0, min((1 << bits) - 1, raw))
    return pack(raw, spec.type, spec.words, spec.bytes)
