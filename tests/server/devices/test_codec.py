"""Table tests for the pure codec and read planner."""

from __future__ import annotations

import pytest

from server.bus import Quality
from server.devices.codec import decode, decode_point, encode_point, pack, unpack
from server.devices.plan import Read, plan
from server.devices.profile import PointSpec, Profile, Quirks

UNPACK = [
    ([0x0001], "uint16", "big", "big", 1),
    ([0xFFFF], "int16", "big", "big", -1),
    ([0x0001, 0x0002], "uint32", "big", "big", 0x00010002),
    ([0x0002, 0x0001], "uint32", "little", "big", 0x00010002),  # Sungrow/Deye: low word first
    ([0x0100], "uint16", "big", "little", 1),  # byte-swapped registers
    ([0xFFFF, 0xFFFE], "int32", "big", "big", -2),
    ([0x4348, 0x0000], "float32", "big", "big", 200.0),
    ([0, 0, 0, 5], "uint64", "big", "big", 5),
]


@pytest.mark.parametrize(("regs", "type_", "words", "byteorder", "value"), UNPACK)
def test_unpack_and_pack_round_trip(regs: list[int], type_: str, words: str, byteorder: str, value: float) -> None:
    assert unpack(regs, type_, words, byteorder) == value
    assert pack(value, type_, words, byteorder) == regs


def spec(**kw: object) -> PointSpec:
    base = {"name": "grid.power_w", "address": 0, "unit": "W"}
    base.update(kw)
    return PointSpec(**base)  # type: ignore[arg-type]


DECODE = [
    (spec(type="int16"), [0xFF38], None, -200, Quality.OK),
    (spec(type="int16", scale=-1), [0xFF38], None, 200, Quality.OK),
    (spec(type="uint16", scale=0.1), [2301], None, 230.1, Quality.OK),
    (spec(type="uint16", scale=0.1, add=-100), [1500], None, 50, Quality.OK),
    (spec(type="int16", sf=9), [1234], -1, 123.4, Quality.OK),
    (spec(type="int16", sf=9), [1234], -32768, None, Quality.NA),  # SF itself not available
    (spec(type="int16", na=(0x8000,)), [0x8000], None, None, Quality.NA),
    (spec(type="uint32", na=(0xFFFFFFFF,)), [0xFFFF, 0xFFFF], None, None, Quality.NA),
    (spec(type="acc32", na=(0,)), [0, 0], None, None, Quality.NA),
    (spec(type="float32"), [0x7FC0, 0], None, None, Quality.NA),  # NaN
    (spec(type="int16", range=(-100.0, 100.0)), [500], None, 500, Quality.OUT_OF_RANGE),
]


@pytest.mark.parametrize(("p", "regs", "sf", "value", "quality"), DECODE)
def test_decode_point(p: PointSpec, regs: list[int], sf: int | None, value: object, quality: Quality) -> None:
    point = decode_point(p, regs, sf)
    assert point.quality is quality
    assert point.value == (pytest.approx(value) if isinstance(value, float) else value)


@pytest.mark.parametrize(
    ("p", "value", "sf"),
    [
        (spec(type="int16", scale=-1), 1500.0, 0),
        (spec(type="uint32", words="little", scale=100, unit="Wh", name="pv.energy_wh"), 12_345_600.0, 0),
        (spec(type="int16", sf=1, unit="V", name="grid.voltage_l1_v"), 230.4, -1),
        (spec(type="float32"), -42.5, 0),
    ],
)
def test_encode_then_decode(p: PointSpec, value: float, sf: int) -> None:
    assert decode_point(p, encode_point(p, value, sf), sf).value == pytest.approx(value)


def test_decode_missing_registers_is_na() -> None:
    profile = Profile("t", "m", "m", "meter", Quirks(), (spec(address=5),))
    assert decode(profile, {})["grid.power_w"].quality is Quality.NA


PLAN = [
    ({(3, 0, 1), (3, 1, 1), (3, 2, 2)}, 100, 10, [Read(3, 0, 4)]),
    ({(3, 0, 1), (3, 20, 1)}, 100, 10, [Read(3, 0, 1), Read(3, 20, 1)]),  # gap too large
    ({(3, 0, 1), (3, 11, 1)}, 100, 10, [Read(3, 0, 12)]),  # gap of exactly 10 bridged
    ({(3, 0, 1), (3, 9, 2)}, 10, 10, [Read(3, 0, 1), Read(3, 9, 2)]),  # would exceed max_registers
    ({(3, 0, 2), (4, 0, 2)}, 100, 10, [Read(3, 0, 2), Read(4, 0, 2)]),  # function codes never merge
    ({(3, 0, 1), (3, 3, 2)}, 4, 10, [Read(3, 0, 1), Read(3, 3, 2)]),  # a 32-bit value is not split
    ({(3, 5, 2), (3, 5, 1)}, 100, 0, [Read(3, 5, 2)]),  # overlapping spans
]


@pytest.mark.parametrize(("wanted", "max_regs", "gap", "reads"), PLAN)
def test_plan(wanted: set, max_regs: int, gap: int, reads: list[Read]) -> None:
    assert plan(wanted, max_regs, gap) == reads
