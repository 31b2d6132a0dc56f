"""Non-Modbus meter families as data: DSMR P1 telegrams, HomeWizard P1 and Enphase Envoy JSON.

A meter profile (`profiles/meters/<key>.yaml`) says which transports reach the device, its link
defaults, and how each canonical point is found: an OBIS code in a P1 telegram, or a path into the
JSON document the device's local API returns. `decode(profile, document)` turns one fetched document
into points; it is pure, so every profile is tested against recorded documents without any I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from server.bus import Point, Quality

from . import p1
from .points import CANONICAL, FREE_PREFIXES
from .profile import ProfileError, Quirks

METER_DIR = Path(__file__).with_name("profiles") / "meters"
FAMILIES = ("dsmr", "json")
METER_TRANSPORTS = ("p1_serial", "p1_tcp", "homewizard", "envoy")

# Points only meters have (per phase, per tariff, sub-meters); the shared ones are in points.CANONICAL.
METER_POINTS: dict[str, tuple[str, str]] = {
    **{f"grid.voltage_l{n}_v": ("V", f"phase L{n} voltage") for n in (2, 3)},
    **{f"grid.current_l{n}_a": ("A", f"phase L{n} current") for n in (2, 3)},
    **{f"grid.power_l{n}_w": ("W", f"phase L{n} power: + import, - export") for n in (1, 2, 3)},
    **{f"grid.import_t{n}_wh": ("Wh", f"energy imported at tariff {n} (meter register)") for n in (1, 2)},
    **{f"grid.export_t{n}_wh": ("Wh", f"energy exported at tariff {n} (meter register)") for n in (1, 2)},
    "gas.volume_m3": ("m3", "gas meter reading (M-Bus sub-meter)"),
    "gas.read_ts": ("s", "when the gas meter was last read (UTC epoch seconds)"),
    "water.volume_m3": ("m3", "water meter reading (M-Bus sub-meter)"),
    "water.read_ts": ("s", "when the water meter was last read (UTC epoch seconds)"),
}
UNITS = ("W", "Wh", "V", "A", "Hz", "%", "m3", "s", "")
_SEGMENT = re.compile(r"^([^\[\]]*)(?:\[([^\]]+)\])?$")


@dataclass(frozen=True, slots=True)
class MeterPoint:
    """Where one point comes from: OBIS codes (dsmr) or JSON paths (json); the first one present wins."""

    name: str
    unit: str
    sources: tuple[str, ...]
    scale: float = 1.0
    time: str = ""  # "dsmr": the value is a YYMMDDhhmmss stamp (HomeWizard gas), converted to epoch seconds
    range: tuple[float, float] | None = None


@dataclass(frozen=True, slots=True)
class Derived:
    """A point computed from others: a signed sum (import - export, tariff 1 + tariff 2)."""

    name: str
    unit: str
    terms: tuple[tuple[float, str], ...]


@dataclass(frozen=True, slots=True)
class MeterProfile:
    """One non-Modbus device family; has the Profile attributes the poller and service read."""

    key: str
    maker: str
    model: str
    kind: str
    family: str  # dsmr, json
    transports: tuple[str, ...]
    quirks: Quirks
    points: tuple[MeterPoint, ...]
    derived: tuple[Derived, ...] = ()
    sub_meters: bool = False  # dsmr: gas and water from the M-Bus channels
    mdns: str = ""  # service type the device announces (discovery)
    source: str = ""
    path: str = ""
    writable: tuple[Any, ...] = ()  # meters are read-only: control and Home Assistant find nothing to set

    @property
    def readings(self) -> tuple[MeterPoint | Derived, ...]:
        """Every point a snapshot can carry: read ones and derived ones (for sensor lists such as HA's)."""
        return self.points + self.derived

    sunspec: bool = False  # never: lets Modbus-only code tell the two apart without isinstance
    writable: tuple[()] = ()

    def writable_point(self, address: int) -> None:
        """Meters expose nothing writable."""
        return None


def point_unit(name: str) -> str | None:
    """The unit a canonical or meter point is measured in (None for raw./x. names and unknown ones)."""
    if name in CANONICAL:
        return CANONICAL[name][0]
    if name in METER_POINTS:
        return METER_POINTS[name][0]
    return None


def _check_name(name: str, unit: str) -> str | None:
    if name.startswith(FREE_PREFIXES):
        return None
    want = point_unit(name)
    if want is None:
        return f"{name!r} is not a canonical or meter point name and has no raw./x. prefix"
    if unit != want:
        return f"{name} is measured in {want!r}, not {unit!r}"
    return None


def parse_meter_profile(data: Any, path: str, key: str) -> MeterProfile:
    """Validate loaded YAML and build a MeterProfile; raises ProfileError naming the file and field."""

    def fail(where: str, msg: str) -> ProfileError:
        return ProfileError(f"{path}: {where}: {msg}")

    if not isinstance(data, Mapping):
        raise fail("(top level)", "a meter profile must be a map of fields")
    allowed = {"maker", "model", "kind", "family", "transports", "defaults", "points", "derived", "sub_meters"}
    allowed |= {"mdns", "source"}
    for k in data:
        if k not in allowed:
            raise fail(str(k), f"unknown field (allowed: {sorted(allowed)})")
    for k in ("maker", "model", "family", "transports", "points"):
        if k not in data:
            raise fail(k, "is required")
    family = data["family"]
    if family not in FAMILIES:
        raise fail("family", f"must be one of {', '.join(FAMILIES)}, got {family!r}")
    transports = data["transports"]
    if not isinstance(transports, list) or not transports or any(t not in METER_TRANSPORTS for t in transports):
        raise fail("transports", f"a non-empty list of {', '.join(METER_TRANSPORTS)}")
    d = data.get("defaults", {}) or {}
    if not isinstance(d, Mapping):
        raise fail("defaults", "must be a map")
    for k in d:
        if k not in ("port", "baudrate", "parity", "timeout", "request_gap"):
            raise fail(f"defaults.{k}", "unknown field (allowed: port, baudrate, parity, timeout, request_gap)")
    quirks = Quirks(
        transport=transports[0],
        port=_num(d, "port", 0, 0, 65535, fail, int),
        baudrate=_num(d, "baudrate", 115200, 1200, 921600, fail, int),
        parity=str(d.get("parity", "N")),
        timeout=_num(d, "timeout", 3.0, 0.05, 30.0, fail, float),
        request_gap=_num(d, "request_gap", 0.0, 0.0, 10.0, fail, float),
    )
    if quirks.parity not in ("N", "E"):
        raise fail("defaults.parity", "N (8N1, DSMR 4/5) or E (7E1, DSMR 2.2/3)")
    points: list[MeterPoint] = []
    seen: set[str] = set()
    raw_points = data["points"]
    if not isinstance(raw_points, list):
        raise fail("points", "must be a list")
    for i, rp in enumerate(raw_points):
        where = f"points[{i}]"
        if not isinstance(rp, Mapping) or not isinstance(rp.get("name"), str):
            raise fail(where, "must be a map with a name")
        extra = set(rp) - {"name", "unit", "obis", "path", "scale", "time", "range"}
        if extra:
            raise fail(f"{where}.{sorted(extra)[0]}", "unknown field")
        name, unit = rp["name"], rp.get("unit", "")
        where = f"points[{i}] ({name})"
        if name in seen:
            raise fail(f"{where}.name", "appears twice")
        seen.add(name)
        if unit not in UNITS:
            raise fail(f"{where}.unit", f"must be one of {UNITS}")
        if problem := _check_name(name, unit):
            raise fail(f"{where}.name", problem)
        src_key = "obis" if family == "dsmr" else "path"
        src = rp.get(src_key)
        sources = [src] if isinstance(src, str) else src
        if not isinstance(sources, list) or not sources or not all(isinstance(s, str) and s for s in sources):
            raise fail(f"{where}.{src_key}", "a string or a non-empty list of strings")
        scale = rp.get("scale", 1.0)
        if isinstance(scale, bool) or not isinstance(scale, int | float) or scale == 0:
            raise fail(f"{where}.scale", "a non-zero number")
        time = rp.get("time", "")
        if time not in ("", "dsmr"):
            raise fail(f"{where}.time", "'dsmr' (a YYMMDDhhmmss stamp) or absent")
        rng = rp.get("range")
        if rng is not None:
            if not isinstance(rng, list) or len(rng) != 2 or not all(isinstance(v, int | float) for v in rng):
                raise fail(f"{where}.range", "[min, max]")
            rng = (float(rng[0]), float(rng[1]))
        points.append(MeterPoint(name, unit, tuple(sources), float(scale), time, rng))
    derived: list[Derived] = []
    for i, rd in enumerate(data.get("derived", []) or []):
        where = f"derived[{i}]"
        if not isinstance(rd, Mapping) or not isinstance(rd.get("name"), str) or not isinstance(rd.get("sum"), list):
            raise fail(where, "a map with name, unit and sum: [point, -point, ...]")
        name, unit = rd["name"], rd.get("unit", "")
        if problem := _check_name(name, unit):
            raise fail(f"{where}.name", problem)
        terms = []
        for term in rd["sum"]:
            if not isinstance(term, str):
                raise fail(f"{where}.sum", "names of points, '-' in front to subtract")
            sign, ref = (-1.0, term[1:]) if term.startswith("-") else (1.0, term)
            if ref not in seen:
                raise fail(f"{where}.sum", f"{ref!r} is not a point of this profile")
            terms.append((sign, ref))
        if name in seen:
            raise fail(f"{where}.name", "appears twice")
        seen.add(name)
        derived.append(Derived(name, unit, tuple(terms)))
    sub = data.get("sub_meters", False)
    if not isinstance(sub, bool):
        raise fail("sub_meters", "true or false")
    return MeterProfile(
        key=key,
        maker=str(data["maker"]),
        model=str(data["model"]),
        kind=str(data.get("kind", "meter")),
        family=family,
        transports=tuple(transports),
        quirks=quirks,
        points=tuple(points),
        derived=tuple(derived),
        sub_meters=sub,
        mdns=str(data.get("mdns", "")),
        source=str(data.get("source", "")),
        path=path,
    )


def _num(d: Mapping[str, Any], key: str, default: Any, lo: float, hi: float, fail: Any, kind: type) -> Any:
    value = d.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or (kind is int and not isinstance(value, int)):
        raise fail(f"defaults.{key}", f"must be {'an integer' if kind is int else 'a number'}")
    if not lo <= value <= hi:
        raise fail(f"defaults.{key}", f"must be between {lo:g} and {hi:g}")
    return kind(value)


_cache: dict[str, MeterProfile] = {}


def meter_profile_names() -> list[str]:
    """Keys of the shipped meter profiles."""
    return sorted(p.stem for p in METER_DIR.glob("*.yaml"))


def is_meter_profile(key: object) -> bool:
    """Whether `key` names a shipped meter profile (not a Modbus one)."""
    return isinstance(key, str) and key in meter_profile_names()


def load_meter_profile(key: str) -> MeterProfile:
    """The meter profile called `key` (validated once, cached)."""
    if key in _cache:
        return _cache[key]
    if key not in meter_profile_names():
        raise ProfileError(f"no meter profile {str(key)[:64]!r} (known: {', '.join(meter_profile_names())})")
    path = METER_DIR / f"{key}.yaml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ProfileError(f"{path}: cannot load: {exc}") from None
    profile = _cache[key] = parse_meter_profile(data, str(path), key)
    return profile


def load_any_profile(key: str) -> Any:
    """A meter profile when `key` names one, else the Modbus profile (ProfileError when neither)."""
    if is_meter_profile(key):
        return load_meter_profile(key)
    from .profile import load_profile

    return load_profile(key)


# ---- decoding (pure) ------------------------------------------------------------------------


def decode(profile: MeterProfile, document: Any) -> dict[str, Point]:
    """Points from one fetched document: a p1.Telegram (dsmr family) or parsed JSON (json family)."""
    values: dict[str, float] = {}
    for mp in profile.points:
        raw = _lookup_obis(document, mp) if profile.family == "dsmr" else _lookup_json(document, mp.sources)
        if raw is None:
            continue
        if mp.time == "dsmr" and profile.family == "json":
            stamp = p1.parse_stamp(str(int(raw)) if isinstance(raw, int | float) else str(raw))
            if stamp is not None:
                values[mp.name] = stamp
            continue
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            continue
        values[mp.name] = round(float(raw) * mp.scale, 6)
    if profile.family == "dsmr" and profile.sub_meters and isinstance(document, p1.Telegram):
        values.update(_sub_meter_values(document))
    points: dict[str, Point] = {}
    for mp in profile.points:
        if mp.name in values:
            v = values[mp.name]
            bad = mp.range is not None and not mp.range[0] <= v <= mp.range[1]
            points[mp.name] = Point(v, mp.unit, Quality.OUT_OF_RANGE if bad else Quality.OK)
    for name, v in values.items():
        if name not in points:  # sub-meter points come from the M-Bus channels, not the table
            points[name] = Point(v, point_unit(name) or "")
    for d in profile.derived:
        if all(ref in values for _, ref in d.terms):
            total = round(sum(sign * values[ref] for sign, ref in d.terms), 6)
            values[d.name] = total
            ok = all(points[ref].quality is Quality.OK for _, ref in d.terms)
            points[d.name] = Point(total, d.unit, Quality.OK if ok else Quality.OUT_OF_RANGE)
    return points


def _lookup_obis(tel: Any, mp: MeterPoint) -> float | None:
    if not isinstance(tel, p1.Telegram):
        return None
    for code in mp.sources:
        if mp.time == "dsmr":
            groups = tel.objects.get(code)
            if groups:
                return p1.parse_stamp(groups[0])
            continue
        number = tel.number(code)
        if number is None:
            continue
        value, unit = number
        if mp.unit and unit and unit != mp.unit:
            continue  # DSMR 3 sends 0-0:17.0.0 in A where later versions use kW: not the same quantity
        return value
    return None


def _sub_meter_values(tel: p1.Telegram) -> dict[str, float]:
    out: dict[str, float] = {}
    for sm in p1.sub_meters(tel):
        kind = "water" if sm.kind == p1.WATER else "gas" if sm.kind in (p1.GAS, 0) else ""
        if not kind or f"{kind}.volume_m3" in out:
            continue  # other M-Bus devices (heat, ...) and a second meter of the same kind are left out
        out[f"{kind}.volume_m3"] = sm.value
        if sm.ts is not None:
            out[f"{kind}.read_ts"] = sm.ts
    return out


def _lookup_json(doc: Any, paths: tuple[str, ...]) -> Any:
    for path in paths:
        value = json_path(doc, path)
        if value is not None:
            return value
    return None


def json_path(doc: Any, path: str) -> Any:
    """Follow 'a.b[k=v].c' or 'a[0].b' into parsed JSON; None where the path leads nowhere."""
    node = doc
    for part in path.split("."):
        match = _SEGMENT.match(part)
        if match is None:
            return None
        key, selector = match.groups()
        if key:
            if not isinstance(node, Mapping) or key not in node:
                return None
            node = node[key]
        if selector is None:
            continue
        if not isinstance(node, list):
            return None
        if selector.isdigit():
            index = int(selector)
            node = node[index] if index < len(node) else None
        else:
            want = dict(cond.split("=", 1) for cond in selector.split(",") if "=" in cond)
            node = next(
                (
                    item
                    for item in node
                    if isinstance(item, Mapping) and all(str(item.get(k)) == v for k, v in want.items())
                ),
                None,
            )
        if node is None:
            return None
    return node
