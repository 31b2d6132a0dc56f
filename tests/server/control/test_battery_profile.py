"""Composite writable points in profiles (battery charge/discharge): schema checks and sequences (pure)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from server.control.model import Invalid, check_value, fit
from server.control.writer import register_writes
from server.devices.profile import ProfileError, load_profile, parse_profile

BASE: dict[str, Any] = {
    "maker": "Test",
    "model": "hybrid",
    "kind": "hybrid",
    "points": [{"name": "battery.soc_pct", "address": 10, "unit": "%"}],
}
BATTERY: dict[str, Any] = {
    "name": "control.battery_power_w",
    "unit": "W",
    "min": -5000,
    "max": 5000,
    "step": 10,
    "default": 0,
    "registers": {"mode": {"address": 100}, "command": {"address": 101}, "power": {"address": 102}},
    "sequence": {
        "positive": {"power": "value", "command": 0xAA, "mode": 2},
        "negative": {"power": "value", "command": 0xBB, "mode": 2},
        "zero": {"command": 0xCC, "power": 0, "mode": 0},
    },
}


def profile_with(change: Any = None, *extra: dict[str, Any]) -> dict[str, Any]:
    """The test profile with one battery point, changed by `change(point)`, plus extra writable rows."""
    point = copy.deepcopy(BATTERY)
    if change is not None:
        change(point)
    return {**BASE, "writable": [point, *extra]}


def _set(path: str, value: Any) -> Any:
    def change(point: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = point
        for p in parents:
            node = node[p]
        if value is DELETE:
            del node[last]
        else:
            node[last] = value

    return change


DELETE = object()
W = "writable[0] (control.battery_power_w)"

# (what changes, the error names this field, and says this)
BAD = [
    (_set("address", 5), f"{W}.address", "unknown field"),
    (_set("registers", {}), f"{W}.registers", "at least one register"),
    (_set("registers.mode", {"address": 70000}), f"{W}.registers.mode.address", "between 0 and 65535"),
    (_set("registers.mode", {"address": 100, "type": "float32"}), f"{W}.registers.mode.type", "must be one of"),
    (_set("registers.mode", {"address": 100, "unit": "W"}), f"{W}.registers.mode.unit", "unknown field"),
    (_set("registers.Mode X", {"address": 9}), f"{W}.registers.Mode X", "lower-case"),
    (_set("sequence.negative", DELETE), f"{W}.sequence.negative", "range [-5000, 5000] has negative values"),
    (_set("sequence.zero", DELETE), f"{W}.sequence.zero", "is required"),
    (_set("sequence.later", {"mode": 1}), f"{W}.sequence.later", "unknown case"),
    (_set("sequence.positive", {}), f"{W}.sequence.positive", "must be a map"),
    (_set("sequence.positive.pwr", "value"), f"{W}.sequence.positive.pwr", "no such register"),
    (_set("sequence.positive.mode", "max"), f"{W}.sequence.positive.mode", "integer register value or `value`"),
    (_set("sequence.positive.mode", True), f"{W}.sequence.positive.mode", "integer register value or `value`"),
    (_set("sequence.negative.command", 0xAA), f"{W}.sequence.negative", "same constants as positive"),
    (_set("registers.spare", {"address": 120}), f"{W}.registers.spare", "never written"),
    (_set("sequence.zero.mode", 70000), f"{W}.registers.mode", "does not fit a uint16"),
    (_set("max", 70000), f"{W}.registers.power", "70000 does not fit a uint16"),
    (_set("default", 6000), f"{W}.default", "outside [-5000, 5000]"),
    (_set("step", 0), f"{W}.step", "must be positive"),
    (_set("min", 6000), f"{W}.max", "at least min"),
    (_set("name", "battery.power"), "writable[0] (battery.power).name", "not a canonical"),
    (_set("registers.power", {"address": 101}), "writable[0] (control.battery_power_w)", "register 101 is also"),
]


@pytest.mark.parametrize(("change", "field", "message"), BAD, ids=[f"{b[1]}: {b[2]}" for b in BAD])
def test_bad_composite_points_are_refused_naming_file_and_field(change: Any, field: str, message: str) -> None:
    with pytest.raises(ProfileError) as err:
        parse_profile(profile_with(change), "profiles/test.yaml", "test")
    text = str(err.value)
    assert text.startswith(f"profiles/test.yaml: {field}"), text
    assert message in text, text


def test_a_register_shared_with_a_plain_writable_point_is_refused() -> None:
    plain = {"name": "control.power_limit_w", "address": 102, "unit": "W", "min": 0, "max": 10, "default": 10}
    with pytest.raises(ProfileError, match=r"writable\[1\] \(control.power_limit_w\): register 102 is also written"):
        parse_profile(profile_with(None, plain), "p.yaml", "p")


def test_plain_writable_points_still_parse_as_before() -> None:
    plain = {"name": "control.power_limit_pct", "address": 7, "unit": "%", "min": 0, "max": 100, "default": 100}
    profile = parse_profile({**BASE, "writable": [plain]}, "p.yaml", "p")
    assert profile.writable[0].composite is None and profile.writable_point(7) is profile.writable[0]
    with pytest.raises(ProfileError, match="sequence"):  # half a composite is not silently a plain point
        parse_profile({**BASE, "writable": [{**plain, "sequence": {}}]}, "p.yaml", "p")


def test_charge_only_point_needs_no_negative_sequence() -> None:
    def charge_only(point: dict[str, Any]) -> None:
        point["min"] = 0
        del point["sequence"]["negative"]
        point["registers"]["command"] = {"address": 101}

    spec = parse_profile(profile_with(charge_only), "p.yaml", "p").writable[0]
    assert [case for case, _ in spec.composite.sequences] == ["positive", "zero"]


SEQUENCES = [
    # profile, value, [(register, value written)] in order
    ("sungrow", 5000, [(13051, 5000), (13050, 0xAA), (13049, 2)]),
    ("sungrow", -2500, [(13051, 2500), (13050, 0xBB), (13049, 2)]),
    ("sungrow", 0, [(13050, 0xCC), (13051, 0), (13049, 0)]),
    ("goodwe", 3000, [(47512, 3000), (47511, 11)]),
    ("goodwe", -700, [(47512, 700), (47511, 12)]),
    ("goodwe", 0, [(47511, 1), (47512, 0)]),
]


@pytest.mark.parametrize(("key", "value", "writes"), SEQUENCES)
def test_shipped_battery_points_write_their_sequence_and_decode_back(key: str, value: float, writes: list) -> None:
    profile = load_profile(key)
    spec = check_value(profile, "control.battery_power_w", value)
    got = register_writes(spec, value)
    assert [(reg.address, v) for reg, v in got] == writes
    # Every register of the sequence is writable through the devices service (same range checks).
    for reg, v in got:
        assert profile.writable_point(reg.address) is reg and reg.min <= v <= reg.max
    by_role = {role: dict(writes)[reg.address] for role, reg in spec.composite.registers}
    assert spec.composite.decode(by_role) == value


def test_values_are_checked_like_any_point_and_unknown_states_revert_to_the_safe_default() -> None:
    profile = load_profile("sungrow")
    with pytest.raises(Invalid, match=r"outside control\.battery_power_w's range"):
        check_value(profile, "control.battery_power_w", 20000)
    with pytest.raises(Invalid, match="not a multiple of the step 10"):
        check_value(profile, "control.battery_power_w", 1005)
    spec = profile.writable[0]
    # External EMS mode (3), or half a sequence: no case matches -> the revert writes the safe default (0).
    assert spec.composite.decode({"mode": 3, "command": 0xCC, "power": 0}) is None
    assert spec.composite.decode({"mode": 0, "command": 0xAA, "power": 1000}) is None
    assert fit(spec, None) == 0
    assert spec.composite.decode({"mode": 2, "command": 0xBB, "power": 1200}) == -1200
