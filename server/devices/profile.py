"""Device profiles as data: load a YAML file, validate every field, return frozen specs.

Validation is plain Python over the loaded YAML (no jsonschema dependency): the rules are few,
and hand-written checks give messages that name the file and the field path exactly.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from .points import check_name

PROFILE_DIR = Path(__file__).with_name("profiles")

# type -> registers it occupies
TYPES: dict[str, int] = {
    "int16": 1,
    "uint16": 1,
    "int32": 2,
    "uint32": 2,
    "acc32": 2,  # SunSpec accumulator: uint32 where 0 means not available
    "float32": 2,
    "int64": 4,
    "uint64": 4,
    "float64": 4,
}
FUNCTIONS = (3, 4)
ORDERS = ("big", "little")
TRANSPORTS = ("tcp", "rtu", "solarman")
PARITIES = ("N", "E", "O")
UNITS = ("W", "Wh", "V", "A", "Hz", "%", "degC", "VA", "var", "")


class ProfileError(ValueError):
    """A profile file is missing, unreadable or breaks the schema; the message names file and field."""


@dataclass(frozen=True, slots=True)
class PointSpec:
    """Where one canonical point lives and how to turn its registers into a value."""

    name: str
    address: int
    fc: int = 3
    type: str = "uint16"
    words: str = "big"  # word order of multi-register values
    bytes: str = "big"  # byte order inside each register
    scale: float = 1.0
    add: float = 0.0  # applied after scaling (e.g. Deye temperatures carry +100 degC)
    sf: int | None = None  # address of an int16 scale-factor register: value * 10**sf
    unit: str = ""
    na: tuple[int, ...] = ()  # raw sentinels meaning "not available"
    range: tuple[float, float] | None = None  # plausible range in canonical units
    # SunSpec points are placed relative to a model; resolved to `address` at connect time.
    model: tuple[int, ...] = ()
    at: int | None = None
    sf_at: int | None = None

    @property
    def count(self) -> int:
        """Registers this point occupies."""
        return TYPES[self.type]


@dataclass(frozen=True, slots=True)
class WritableSpec:
    """A register the gateway may write, with its limits and a safe default (or a composite of registers)."""

    name: str
    address: int
    type: str = "uint16"
    words: str = "big"
    scale: float = 1.0
    unit: str = ""
    min: float = 0.0
    max: float = 0.0
    step: float = 1.0
    default: float = 0.0
    composite: Composite | None = None  # set: the point is written as a sequence of registers, `address` is -1

    @property
    def count(self) -> int:
        """Registers this point occupies."""
        return TYPES[self.type]


# Cases of a composite point, chosen by the sign of the value; the token that stands for |value|.
CASES = ("positive", "negative", "zero")
VALUE = "value"


@dataclass(frozen=True, slots=True)
class Composite:
    """A point written as an ordered sequence of register writes, chosen by the value's sign.

    `registers` are register-level specs (one per role, e.g. EMS mode, command, power); `sequences`
    maps each case to its ordered steps (role, raw constant or VALUE = |value| in the register's scale).
    """

    registers: tuple[tuple[str, WritableSpec], ...]
    sequences: tuple[tuple[str, tuple[tuple[str, int | str], ...]], ...]

    def register(self, role: str) -> WritableSpec:
        """The register spec playing `role`."""
        return dict(self.registers)[role]

    def case(self, value: float) -> str:
        """Which sequence a value takes: positive, negative or zero."""
        return "positive" if value > 0 else "negative" if value < 0 else "zero"

    def writes(self, value: float) -> tuple[tuple[WritableSpec, float], ...]:
        """The ordered writes (register spec, value in that register's units) that set `value`."""
        regs = dict(self.registers)
        out = []
        for role, token in dict(self.sequences)[self.case(value)]:
            spec = regs[role]
            out.append((spec, abs(value) if token == VALUE else token * spec.scale))
        return tuple(out)

    def decode(self, values: Mapping[str, float | None]) -> float | None:
        """The point's value from register values by role (register units); None when no case matches."""
        regs = dict(self.registers)
        order = ("zero", "positive", "negative")  # the inverter's own mode first: it is the common state
        for case, steps in sorted(self.sequences, key=lambda cs: order.index(cs[0])):
            magnitude: float | None = 0.0
            for role, token in steps:
                got = values.get(role)
                if got is None:
                    break
                if token == VALUE:
                    magnitude = got
                elif abs(got - token * regs[role].scale) > abs(regs[role].scale) / 2:
                    break
            else:
                if case == "zero":
                    return 0.0
                return magnitude if case == "positive" else -magnitude
        return None


@dataclass(frozen=True, slots=True)
class Quirks:
    """Transport defaults and device peculiarities, all data."""

    transport: str = "tcp"
    port: int = 502
    unit_id: int = 1
    baudrate: int = 9600
    parity: str = "N"
    stopbits: int = 1
    connect_delay: float = 0.0  # seconds to wait after connecting before the first request (Huawei)
    request_gap: float = 0.0  # seconds between requests on the same bus/endpoint
    max_registers: int = 100  # per read request
    max_gap: int = 10  # unused registers a merged read may span
    exclusive: bool = False  # device accepts one client at a time: never hold two connections
    timeout: float = 2.0
    write_retries: int = 2  # control writes: extra attempts when a write fails or does not read back
    write_settle: float = 0.0  # seconds a device needs after a write before it reads back the new value


@dataclass(frozen=True, slots=True)
class Profile:
    """One device family: identity, quirks, points to read and points that may be written."""

    key: str
    maker: str
    model: str
    kind: str  # inverter, hybrid, meter, battery, raw
    quirks: Quirks
    points: tuple[PointSpec, ...]
    writable: tuple[WritableSpec, ...] = ()
    sunspec: bool = False  # addresses are resolved by walking the SunSpec model chain
    sunspec_base: int = 40000
    source: str = ""
    path: str = ""
    detect: Mapping[str, Any] = field(default_factory=dict)

    def point(self, name: str) -> PointSpec:
        """The point called `name` (KeyError if the profile has none)."""
        for p in self.points:
            if p.name == name:
                return p
        raise KeyError(name)

    def writable_point(self, address: int) -> WritableSpec | None:
        """The writable register starting at `address`, if any (a composite point's registers included)."""
        for w in self.writable:
            if w.composite is not None:
                for _role, reg in w.composite.registers:
                    if reg.address == address:
                        return reg
            elif w.address == address:
                return w
        return None

    def resolved(self, models: Mapping[int, int]) -> Profile:
        """Place model-relative (SunSpec) points using `models` {model id: address of its ID register}.

        Points whose models the device lacks are dropped: a meter-less inverter simply has no grid points.
        """
        points = []
        for p in self.points:
            if p.at is None:
                points.append(p)
                continue
            base = next((models[m] for m in p.model if m in models), None)
            if base is None:
                continue
            sf = base + p.sf_at if p.sf_at is not None else p.sf
            points.append(replace(p, address=base + p.at, sf=sf, at=None, sf_at=None, model=()))
        return replace(self, points=tuple(points))


class _Check:
    """Collects the file name and a field path for error messages."""

    def __init__(self, path: str) -> None:
        self.path = path

    def fail(self, where: str, msg: str) -> ProfileError:
        return ProfileError(f"{self.path}: {where}: {msg}")

    def get(self, data: Mapping[str, Any], key: str, where: str, kind: type | tuple[type, ...], default: Any = ...):
        if key not in data:
            if default is ...:
                raise self.fail(f"{where}.{key}" if where else key, "is required")
            return default
        value = data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, bool) and bool not in kinds:
            raise self.fail(f"{where}.{key}" if where else key, f"must be {_names(kinds)}, not a boolean")
        if not isinstance(value, kinds):
            raise self.fail(
                f"{where}.{key}" if where else key, f"must be {_names(kinds)}, got {type(value).__name__} {value!r}"
            )
        return value

    def choice(self, data: Mapping[str, Any], key: str, where: str, choices: tuple, default: Any) -> Any:
        value = data.get(key, default)
        if value not in choices:
            raise self.fail(f"{where}.{key}", f"must be one of {', '.join(map(str, choices))}, got {value!r}")
        return value

    def unknown(self, data: Mapping[str, Any], allowed: set[str], where: str) -> None:
        extra = sorted(set(data) - allowed)
        if extra:
            raise self.fail(f"{where}.{extra[0]}" if where else extra[0], f"unknown field (allowed: {sorted(allowed)})")


def _names(kinds: tuple[type, ...]) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true/false", list: "a list", dict: "a map"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


_PROFILE_KEYS = {"maker", "model", "kind", "source", "defaults", "points", "writable", "sunspec", "detect"}
_DEFAULT_KEYS = {
    "transport",
    "port",
    "unit_id",
    "baudrate",
    "parity",
    "stopbits",
    "connect_delay",
    "request_gap",
    "max_registers",
    "max_gap",
    "exclusive",
    "timeout",
    "write_retries",
    "write_settle",
    "fc",
    "words",
    "bytes",
    "na",
}
_POINT_KEYS = {
    "name",
    "address",
    "fc",
    "type",
    "words",
    "bytes",
    "scale",
    "add",
    "sf",
    "unit",
    "na",
    "range",
    "model",
    "at",
    "sf_at",
}
_WRITE_KEYS = {"name", "address", "type", "words", "scale", "unit", "min", "max", "step", "default"}
_COMPOSITE_KEYS = {"name", "unit", "min", "max", "step", "default", "registers", "sequence"}
_REGISTER_KEYS = {"address", "type", "words", "scale"}
WRITE_TYPES = ("int16", "uint16", "int32", "uint32")


def parse_profile(data: Any, path: str, key: str) -> Profile:
    """Validate loaded YAML `data` and build a Profile; raises ProfileError naming `path` and the field."""
    c = _Check(path)
    if not isinstance(data, Mapping):
        raise c.fail("(top level)", "a profile must be a map of fields")
    c.unknown(data, _PROFILE_KEYS, "")
    maker = c.get(data, "maker", "", str)
    model = c.get(data, "model", "", str)
    kind = c.choice(data, "kind", "", ("inverter", "hybrid", "meter", "battery", "raw"), data.get("kind"))
    d = c.get(data, "defaults", "", dict, {})
    c.unknown(d, _DEFAULT_KEYS, "defaults")
    quirks = Quirks(
        transport=c.choice(d, "transport", "defaults", TRANSPORTS, "tcp"),
        port=_int_in(c, d, "port", "defaults", 502, 1, 65535),
        unit_id=_int_in(c, d, "unit_id", "defaults", 1, 0, 255),
        baudrate=_int_in(c, d, "baudrate", "defaults", 9600, 1200, 921600),
        parity=c.choice(d, "parity", "defaults", PARITIES, "N"),
        stopbits=c.choice(d, "stopbits", "defaults", (1, 2), 1),
        connect_delay=_num_in(c, d, "connect_delay", "defaults", 0.0, 0.0, 30.0),
        request_gap=_num_in(c, d, "request_gap", "defaults", 0.0, 0.0, 10.0),
        max_registers=_int_in(c, d, "max_registers", "defaults", 100, 4, 125),
        max_gap=_int_in(c, d, "max_gap", "defaults", 10, 0, 100),
        exclusive=c.get(d, "exclusive", "defaults", bool, False),
        timeout=_num_in(c, d, "timeout", "defaults", 2.0, 0.05, 30.0),
        write_retries=_int_in(c, d, "write_retries", "defaults", 2, 0, 5),
        write_settle=_num_in(c, d, "write_settle", "defaults", 0.0, 0.0, 10.0),
    )
    fc_default = c.choice(d, "fc", "defaults", FUNCTIONS, 3)
    words_default = c.choice(d, "words", "defaults", ORDERS, "big")
    bytes_default = c.choice(d, "bytes", "defaults", ORDERS, "big")
    na_default = _int_list(c, d, "na", "defaults", [])
    sunspec = c.get(data, "sunspec", "", bool, False)

    raw_points = c.get(data, "points", "", list)
    points: list[PointSpec] = []
    seen: set[str] = set()
    for i, rp in enumerate(raw_points):
        where = f"points[{i}]"
        if not isinstance(rp, Mapping):
            raise c.fail(where, "must be a map")
        c.unknown(rp, _POINT_KEYS, where)
        name = c.get(rp, "name", where, str)
        where = f"points[{i}] ({name})"
        if name in seen:
            raise c.fail(f"{where}.name", "appears twice")
        seen.add(name)
        ptype = c.choice(rp, "type", where, tuple(TYPES), "uint16")
        models = tuple(_int_list(c, rp, "model", where, []))
        at = rp.get("at")
        if at is not None:
            if not sunspec:
                raise c.fail(f"{where}.at", "model-relative points need `sunspec: true`")
            if not models:
                raise c.fail(f"{where}.model", "is required with `at`")
            at = _int_in(c, rp, "at", where, 0, 0, 1000)
            address = 0
        else:
            address = _int_in(c, rp, "address", where, ..., 0, 65535)
            if address + TYPES[ptype] - 1 > 65535:
                raise c.fail(f"{where}.address", "point runs past register 65535")
        rng = rp.get("range")
        if rng is not None:
            if (
                not isinstance(rng, list)
                or len(rng) != 2
                or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in rng)
                or rng[0] > rng[1]
            ):
                raise c.fail(f"{where}.range", f"must be [min, max] numbers with min <= max, got {rng!r}")
            rng = (float(rng[0]), float(rng[1]))
        scale = c.get(rp, "scale", where, float, 1.0)
        if scale == 0:
            raise c.fail(f"{where}.scale", "must not be 0")
        na_list = _int_list(c, rp, "na", where, na_default)
        width = 1 << (16 * TYPES[ptype])
        na = tuple(v for v in na_list if v < width and (TYPES[ptype] == 1 or v >= 0x10000 or "na" in rp))
        unit = c.choice(rp, "unit", where, UNITS, "")
        if problem := check_name(name, unit):
            raise c.fail(f"{where}.name", problem)
        points.append(
            PointSpec(
                name=name,
                address=address,
                fc=c.choice(rp, "fc", where, FUNCTIONS, fc_default),
                type=ptype,
                words=c.choice(rp, "words", where, ORDERS, words_default),
                bytes=c.choice(rp, "bytes", where, ORDERS, bytes_default),
                scale=scale,
                add=c.get(rp, "add", where, float, 0.0),
                sf=_int_in(c, rp, "sf", where, None, 0, 65535),
                unit=unit,
                na=na,
                range=rng,
                model=models,
                at=at,
                sf_at=_int_in(c, rp, "sf_at", where, None, 0, 1000),
            )
        )
    writable: list[WritableSpec] = []
    for i, rw in enumerate(c.get(data, "writable", "", list, [])):
        where = f"writable[{i}]"
        if not isinstance(rw, Mapping):
            raise c.fail(where, "must be a map")
        c.unknown(rw, _WRITE_KEYS | _COMPOSITE_KEYS, where)
        name = c.get(rw, "name", where, str)
        where = f"writable[{i}] ({name})"
        if problem := check_name(name, rw.get("unit", "")):
            raise c.fail(f"{where}.name", problem)
        if "registers" in rw or "sequence" in rw:
            writable.append(_composite(c, rw, name, where, words_default))
            continue
        c.unknown(rw, _WRITE_KEYS, where)
        w = WritableSpec(
            name=name,
            address=_int_in(c, rw, "address", where, ..., 0, 65535),
            type=c.choice(rw, "type", where, ("int16", "uint16", "int32", "uint32"), "uint16"),
            words=c.choice(rw, "words", where, ORDERS, words_default),
            scale=c.get(rw, "scale", where, float, 1.0),
            unit=c.choice(rw, "unit", where, UNITS, ""),
            min=c.get(rw, "min", where, float),
            max=c.get(rw, "max", where, float),
            step=c.get(rw, "step", where, float, 1.0),
            default=c.get(rw, "default", where, float),
        )
        if not w.min <= w.default <= w.max:
            raise c.fail(f"{where}.default", f"safe default {w.default} is outside [{w.min}, {w.max}]")
        if w.step <= 0:
            raise c.fail(f"{where}.step", "must be positive")
        writable.append(w)
    _no_shared_registers(c, writable)
    detect = c.get(data, "detect", "", dict, {})
    return Profile(
        key=key,
        maker=maker,
        model=model,
        kind=kind,
        quirks=quirks,
        points=tuple(points),
        writable=tuple(writable),
        sunspec=sunspec,
        source=c.get(data, "source", "", str, ""),
        path=path,
        detect=detect,
    )


def _composite(c: _Check, rw: Mapping[str, Any], name: str, where: str, words_default: str) -> WritableSpec:
    """A composite writable point: registers by role and the ordered write sequence of each sign."""
    c.unknown(rw, _COMPOSITE_KEYS, where)
    lo, hi = c.get(rw, "min", where, float), c.get(rw, "max", where, float)
    step, default = c.get(rw, "step", where, float, 1.0), c.get(rw, "default", where, float)
    if lo > hi:
        raise c.fail(f"{where}.max", f"must be at least min ({lo:g})")
    if not lo <= default <= hi:
        raise c.fail(f"{where}.default", f"safe default {default:g} is outside [{lo:g}, {hi:g}]")
    if step <= 0:
        raise c.fail(f"{where}.step", "must be positive")
    raw_regs = c.get(rw, "registers", where, dict)
    if not raw_regs:
        raise c.fail(f"{where}.registers", "must name at least one register (role: {address: ...})")
    roles: dict[str, dict[str, Any]] = {}
    for role, rr in raw_regs.items():
        at = f"{where}.registers.{role}"
        if not isinstance(role, str) or not re.fullmatch(r"[a-z][a-z0-9_]{0,31}", role):
            raise c.fail(at, "a role is a short lower-case name such as mode, command or power")
        if not isinstance(rr, Mapping):
            raise c.fail(at, "must be a map with address (and type, words, scale)")
        c.unknown(rr, _REGISTER_KEYS, at)
        rtype = c.choice(rr, "type", at, WRITE_TYPES, "uint16")
        address = _int_in(c, rr, "address", at, ..., 0, 65535)
        if address + TYPES[rtype] - 1 > 65535:
            raise c.fail(f"{at}.address", "register runs past 65535")
        scale = c.get(rr, "scale", at, float, 1.0)
        if scale <= 0:
            raise c.fail(f"{at}.scale", "must be positive")
        roles[role] = {"address": address, "type": rtype, "words": c.choice(rr, "words", at, ORDERS, words_default)}
        roles[role]["scale"] = scale
    raw_seq = c.get(rw, "sequence", where, dict)
    needed = {"positive": hi > 0, "negative": lo < 0, "zero": lo <= 0 <= hi}
    for case in raw_seq:
        if case not in CASES:
            raise c.fail(f"{where}.sequence.{case}", f"unknown case (allowed: {', '.join(CASES)})")
    sequences: list[tuple[str, tuple[tuple[str, int | str], ...]]] = []
    used: dict[str, list[float]] = {role: [] for role in roles}
    for case in CASES:
        at = f"{where}.sequence.{case}"
        if case not in raw_seq:
            if needed[case]:
                raise c.fail(at, f"is required: the range [{lo:g}, {hi:g}] has {case} values")
            continue
        steps = raw_seq[case]
        if not isinstance(steps, Mapping) or not steps:
            raise c.fail(at, "must be a map of role: raw value or `value`, in the order written")
        out: list[tuple[str, int | str]] = []
        for role, token in steps.items():
            if role not in roles:
                raise c.fail(f"{at}.{role}", f"no such register (registers: {', '.join(roles)})")
            reg = roles[role]
            if token == VALUE:
                magnitude = max(abs(lo), abs(hi)) if case != "zero" else 0.0
                used[role] += [0.0, magnitude]
            elif isinstance(token, int) and not isinstance(token, bool):
                used[role].append(token * reg["scale"])
            else:
                raise c.fail(f"{at}.{role}", f"must be an integer register value or `value`, got {token!r}")
            out.append((role, token))
        sequences.append((case, tuple(out)))
    registers: list[tuple[str, WritableSpec]] = []
    zero_writes = dict(next((s for cs, s in sequences if cs == "zero"), ()))
    for role, reg in roles.items():
        values = used[role]
        if not values:
            raise c.fail(f"{where}.registers.{role}", "is never written by any sequence")
        bits = 16 * TYPES[reg["type"]]
        rlo, rhi = (
            (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if reg["type"].startswith("int") else (0, (1 << bits) - 1)
        )
        for v in values:
            if not rlo <= round(v / reg["scale"]) <= rhi:
                raise c.fail(f"{where}.registers.{role}", f"{v:g} does not fit a {reg['type']} register")
        token = zero_writes.get(role, 0)
        registers.append(
            (
                role,
                WritableSpec(
                    name=f"{name}:{role}",
                    address=reg["address"],
                    type=reg["type"],
                    words=reg["words"],
                    scale=reg["scale"],
                    unit=rw.get("unit", "") if any(t == VALUE for _, s in sequences for r, t in s if r == role) else "",
                    min=min(values),
                    max=max(values),
                    step=reg["scale"],
                    default=0.0 if token == VALUE else token * reg["scale"],
                ),
            )
        )
    composite = Composite(tuple(registers), tuple(sequences))
    # Read-back of the value before an action decodes the registers: each sign must be recognisable.
    seen: dict[tuple, str] = {}
    for case, steps in sequences:
        key = tuple(sorted((r, t) for r, t in steps if t != VALUE))
        if key in seen:
            raise c.fail(
                f"{where}.sequence.{case}", f"writes the same constants as {seen[key]}: the value cannot be read back"
            )
        seen[key] = case
    return WritableSpec(
        name=name,
        address=-1,
        unit=c.choice(rw, "unit", where, UNITS, ""),
        min=lo,
        max=hi,
        step=step,
        default=default,
        composite=composite,
    )


def _no_shared_registers(c: _Check, writable: list[WritableSpec]) -> None:
    """Two writable points (or two registers of a composite) must not write the same register."""
    owner: dict[int, str] = {}
    for i, w in enumerate(writable):
        regs = [reg for _, reg in w.composite.registers] if w.composite is not None else [w]
        for reg in regs:
            for a in range(reg.address, reg.address + reg.count):
                if a in owner:
                    raise c.fail(f"writable[{i}] ({w.name})", f"register {a} is also written by {owner[a]}")
                owner[a] = reg.name


def _int_in(c: _Check, data: Mapping[str, Any], key: str, where: str, default: Any, lo: int, hi: int) -> Any:
    value = c.get(data, key, where, int, default)
    if value is None:
        return None
    if not lo <= value <= hi:
        raise c.fail(f"{where}.{key}", f"must be between {lo} and {hi}, got {value}")
    return value


def _num_in(c: _Check, data: Mapping[str, Any], key: str, where: str, default: float, lo: float, hi: float) -> float:
    value = c.get(data, key, where, float, default)
    if not lo <= value <= hi:
        raise c.fail(f"{where}.{key}", f"must be between {lo} and {hi}, got {value}")
    return value


def _int_list(c: _Check, data: Mapping[str, Any], key: str, where: str, default: list[int]) -> list[int]:
    value = data.get(key, default)
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise c.fail(f"{where}.{key}", f"must be an integer or a list of integers, got {value!r}")
    return value


def load_profile_file(path: Path | str) -> Profile:
    """Load and validate one profile file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProfileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"line {mark.line + 1}" if mark is not None else "(parse)"
        raise ProfileError(f"{path}: {at}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    return parse_profile(data, str(path), path.stem)


_cache: dict[str, Profile] = {}


def load_profile(key: str, directory: Path = PROFILE_DIR) -> Profile:
    """The profile called `key` (file stem) from the profile directory, cached."""
    if directory == PROFILE_DIR and key in _cache:
        return _cache[key]
    # A profile is named, never addressed: no path separators, dots or odd lengths from a caller.
    if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", key):
        known = ", ".join(profile_names(directory))
        raise ProfileError(f"no profile {str(key)[:80]!r} (known: {known})")
    path = directory / f"{key}.yaml"
    if not path.exists():
        known = ", ".join(profile_names(directory))
        raise ProfileError(f"no profile {key!r} (known: {known})")
    profile = load_profile_file(path)
    if directory == PROFILE_DIR:
        _cache[key] = profile
    return profile


def profile_names(directory: Path = PROFILE_DIR) -> list[str]:
    """Keys of all profiles in the directory."""
    return sorted(p.stem for p in directory.glob("*.yaml"))


def load_all(directory: Path = PROFILE_DIR) -> dict[str, Profile]:
    """Every profile in the directory, validated (the first bad file raises)."""
    return {k: load_profile(k, directory) for k in profile_names(directory)}
