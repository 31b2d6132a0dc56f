"""Every profile loads, validates, and decodes its recorded dump to hand-computed readings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from server.bus import Quality
from server.devices import sunspec
from server.devices.codec import decode
from server.devices.plan import plan_profile
from server.devices.profile import ProfileError, load_all, load_profile_file, parse_profile, profile_names

DUMPS = Path(__file__).with_name("dumps")

# Hand-computed plant at 12:00 UTC (see modbus_slave/model.py): PV 5000 W, AC 0.96 * 5000 = 4800 W,
# load 800 W, surplus 4000 W -> battery charges 2500 W (-2500), grid = 800 - 4800 + 2500 = -1500 W (export),
# V = 230 + 3 sin(2 pi t/900) = 230 (t is a multiple of 900), Hz = 50.00, temperature 25 + 25 = 50 degC,
# SoC = 55 - 35 cos(2 pi 9/24) = 79.75 %, counters at their bases.
NOON = {
    "pv.power_w": 5000,
    "inverter.power_w": 4800,
    "battery.power_w": -2500,
    "grid.power_w": -1500,
    "grid.voltage_l1_v": 230,
    "grid.frequency_hz": 50,
    "inverter.temperature_c": 50,
    "pv.energy_wh": 12_345_000,
    "grid.import_wh": 4_321_000,
    "grid.export_wh": 2_468_000,
    "grid.current_l1_a": 1500 / 230,
}
SOC = {"%1": 80, "%0.1": 79.7}  # whole-percent registers round, 0.1 % registers keep a decimal

EXPECTED_POINTS = {
    "sunspec": 11,
    "fronius": 6,
    "solaredge": 9,
    "sma": 7,
    "huawei_sun2000": 11,
    "sungrow": 10,
    "growatt": 6,
    "goodwe": 9,
    "deye": 11,
    "solis": 10,
    "sofar": 9,
    "eastron_sdm630": 6,
    "generic": 2,
}


def test_all_required_profiles_exist() -> None:
    assert set(EXPECTED_POINTS) <= set(profile_names())


@pytest.mark.parametrize("key", profile_names())
def test_profile_decodes_recorded_dump(key: str) -> None:
    profile = load_all()[key]
    dump = json.loads((DUMPS / f"{key}.json").read_text())
    regs = {(int(k.split(":")[0]), int(k.split(":")[1])): v for k, v in dump["registers"].items()}
    if profile.sunspec:
        read = lambda a, n: [regs[(3, a + i)] for i in range(n)]  # noqa: E731
        base = sunspec.find_base(read)
        profile = profile.resolved(sunspec.walk(read, base))
    assert len(profile.points) == EXPECTED_POINTS[key]
    assert plan_profile(profile), "a profile with points needs reads"
    points = decode(profile, regs)
    for name, point in points.items():
        if name.startswith("raw."):
            assert point.value == 0
            continue
        assert point.quality is Quality.OK, (name, point)
        if name == "battery.soc_pct":
            spec = profile.point(name)
            assert point.value == (SOC["%0.1"] if spec.scale == 0.1 else SOC["%1"])
        else:
            assert point.value == pytest.approx(NOON[name], rel=1e-4), name


def test_sunspec_walk_finds_inverter_meter_battery() -> None:
    dump = json.loads((DUMPS / "sunspec.json").read_text())
    regs = {(int(k.split(":")[0]), int(k.split(":")[1])): v for k, v in dump["registers"].items()}
    read = lambda a, n: [regs[(3, a + i)] for i in range(n)]  # noqa: E731
    models = sunspec.walk(read, sunspec.find_base(read))
    assert models == {1: 40002, 103: 40070, 203: 40122, 802: 40229}


BAD = [
    ("maker: X\n", "model: is required"),
    ("maker: X\nmodel: Y\nkind: toaster\npoints: []\n", "kind: must be one of"),
    ("maker: X\nmodel: Y\nkind: meter\npoints: [{name: grid.power_w, unit: W}]\n", "points[0] (grid.power_w).address"),
    (
        "maker: X\nmodel: Y\nkind: meter\npoints: [{name: grid.power_w, address: 70000, unit: W}]\n",
        "address: must be between 0 and 65535",
    ),
    ("maker: X\nmodel: Y\nkind: meter\npoints: [{name: grid.power_w, address: 1, unit: V}]\n", "measured in 'W'"),
    ("maker: X\nmodel: Y\nkind: meter\npoints: [{name: grid.pwr, address: 1, unit: W}]\n", "not a canonical"),
    (
        "maker: X\nmodel: Y\nkind: meter\npoints: [{name: grid.power_w, address: 1, type: int24, unit: W}]\n",
        "type: must be one of",
    ),
    (
        "maker: X\nmodel: Y\nkind: meter\npoints: [{name: grid.power_w, address: 1, unit: W, range: [5, 1]}]\n",
        "range: must be [min, max]",
    ),
    ("maker: X\nmodel: Y\nkind: meter\ndefaults: {max_registers: 500}\npoints: []\n", "defaults.max_registers"),
    ("maker: X\nmodel: Y\nkind: meter\ndefaults: {baud: 9600}\npoints: []\n", "defaults.baud: unknown field"),
    (
        "maker: X\nmodel: Y\nkind: meter\npoints: []\nwritable: [{name: control.power_limit_pct, address: 1, "
        "unit: '%', min: 0, max: 100, default: 150}]\n",
        "default: safe default 150.0 is outside",
    ),
    ("maker: [unclosed\n", "not valid YAML"),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_bad_profile_names_file_and_field(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    with pytest.raises(ProfileError) as err:
        load_profile_file(path)
    assert str(path) in str(err.value)
    assert message in str(err.value)


def test_parse_rejects_non_map() -> None:
    with pytest.raises(ProfileError, match=r"x.yaml: \(top level\)"):
        parse_profile([1, 2], "x.yaml", "x")
