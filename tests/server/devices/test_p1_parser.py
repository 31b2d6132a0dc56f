"""DSMR P1 telegrams: each recorded telegram decodes to hand-written readings; corrupt ones are rejected."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.bus import Quality
from server.devices import p1
from server.devices.meters import decode, load_meter_profile

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "dsmr"


def _load(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def _values(name: str) -> dict[str, float]:
    points = decode(load_meter_profile("dsmr"), p1.parse_telegram(_load(name)))
    assert all(p.quality is Quality.OK for p in points.values())
    return {k: p.value for k, p in points.items()}  # type: ignore[misc]


# Hand-computed from the telegram text: kWh * 1000 = Wh, kW * 1000 = W, grid power = import - export.
EXPECTED = {
    "v2_2.txt": (
        "2.2/3.0",
        {
            "grid.import_t1_wh": 1001.0,
            "grid.import_t2_wh": 1001.0,
            "grid.export_t1_wh": 1001.0,
            "grid.export_t2_wh": 1001.0,
            "grid.import_wh": 2002.0,
            "grid.export_wh": 2002.0,
            "grid.power_w": 1010.0,
            "gas.volume_m3": 1.001,
            "gas.read_ts": 1478541600.0,  # 161107190000 (no S/W flag: Dutch local time, winter) = 18:00 UTC
            "x.tariff": 1.0,
        },
    ),
    "v3.txt": (
        "2.2/3.0",
        {
            "grid.import_wh": 24_691_356.0,
            "grid.export_t2_wh": 12_345_678.0,
            "grid.power_w": 1190.0,
            "gas.volume_m3": 1.001,
            "gas.read_ts": 1234450800.0,  # 090212160000 local winter time = 15:00 UTC
        },
    ),
    "v4_2.txt": (
        "4.2",
        {
            "grid.import_t1_wh": 1_581_123.0,
            "grid.import_t2_wh": 1_435_706.0,
            "grid.import_wh": 3_016_829.0,
            "grid.export_wh": 0.0,
            "grid.power_w": 2027.0,
            "grid.power_l1_w": 170.0,
            "grid.power_l2_w": 1247.0,
            "grid.power_l3_w": 209.0,
            "grid.current_l2_a": 6.0,
            "gas.volume_m3": 981.443,
            "gas.read_ts": 1480446000.0,  # 161129200000W = 19:00 UTC
            "x.meter_ts": 1479067077.0,  # 161113205757W = 19:57:57 UTC
        },
    ),
    "v5.txt": (
        "5.0",
        {
            "grid.import_wh": 2_375_582.0,
            "grid.power_w": 111.0,
            "grid.power_l1_w": 56.0,
            "grid.power_l3_w": 55.0,
            "grid.voltage_l1_v": 229.9,
            "grid.voltage_l2_v": 229.2,
            "grid.voltage_l3_v": 222.9,
            "grid.current_l3_a": 1.0,
            "gas.volume_m3": 246.138,  # channel 1 is an empty placeholder; gas sits on channel 2
            "gas.read_ts": 1587933001.0,  # 200426223001S = 20:30:01 UTC
            "x.meter_ts": 1587933205.0,  # 200426223325S
        },
    ),
    "emucs_fluvius_1ph.txt": (
        "e-MUCS 50217",
        {
            "grid.import_t1_wh": 3_457_591.0,
            "grid.import_t2_wh": 4_282_456.0,
            "grid.export_wh": 651_709.0,
            "grid.power_w": 524.0,
            "grid.voltage_l1_v": 231.6,
            "grid.current_l1_a": 2.72,
            "gas.volume_m3": 4761.307,
            "gas.read_ts": 1671565198.0,  # 221220203958W = 19:39:58 UTC
        },
    ),
    "emucs_spec_gas_water.txt": (
        "e-MUCS 50217",
        {
            "grid.import_wh": 15_792.0,
            "grid.export_wh": 11.0,
            "grid.power_w": 0.0,
            "grid.voltage_l3_v": 234.7,
            "gas.volume_m3": 112.384,
            "water.volume_m3": 872.234,
            "water.read_ts": 1589283958.0,  # 200512134558S = 11:45:58 UTC
        },
    ),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_recorded_telegram_decodes_to_expected_readings(name: str) -> None:
    version, want = EXPECTED[name]
    assert p1.parse_telegram(_load(name)).version == version
    got = _values(name)
    for key, value in want.items():
        assert got.get(key) == pytest.approx(value), key


def test_every_fixture_is_covered_and_its_crc_checks() -> None:
    files = sorted(p.name for p in FIXTURES.glob("*.txt"))
    assert files == sorted(EXPECTED)
    for name in files:
        raw = _load(name)
        tel = p1.parse_telegram(raw)
        if tel.crc is not None:
            end = raw.index(b"!")
            assert p1.crc16(raw[: end + 1]) == tel.crc


def test_three_phase_v5_has_every_phase_and_dsmr22_has_none() -> None:
    v5 = _values("v5.txt")
    assert {f"grid.voltage_l{n}_v" for n in (1, 2, 3)} <= set(v5)
    v22 = _values("v2_2.txt")
    assert not any(k.startswith("grid.voltage") for k in v22)
    assert "water.volume_m3" not in v22


def test_corrupt_crc_is_rejected() -> None:
    raw = _load("v5.txt").replace(b"1-0:1.8.1(002130.115*kWh)", b"1-0:1.8.1(002130.116*kWh)")
    with pytest.raises(p1.TelegramError, match="CRC mismatch"):
        p1.parse_telegram(raw)


def test_dsmr5_without_crc_is_rejected_as_truncated() -> None:
    raw = _load("v5.txt")
    cut = raw[: raw.index(b"!") + 1] + b"\r\n"
    with pytest.raises(p1.TelegramError, match="without its CRC"):
        p1.parse_telegram(cut)


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"1-0:1.8.1(000001.000*kWh)\r\n!1234\r\n", "start with"),
        (b"/X\r\n1-0:1.8.1(000001.000*kWh)\r\n", "truncated"),
        (b"/X\r\n1-0:1.8.1(0000\xff1.000*kWh)\r\n!\r\n", "non-ASCII"),
        (b"/X\r\n1-0:1.8.1(000001.000*kWh\r\n!\r\n", "malformed"),
        (b"/X\r\n!ZZZZ\r\n", "bad CRC"),
    ],
)
def test_malformed_telegrams_say_why(raw: bytes, why: str) -> None:
    with pytest.raises(p1.TelegramError, match=why):
        p1.parse_telegram(raw)


def test_split_frames_handles_noise_partial_and_interrupted_telegrams() -> None:
    a, b = _load("v4_2.txt"), _load("v5.txt")
    frames, rest = p1.split_frames(b"noise" + a + b[:100])
    assert frames == [a] and rest == b[:100]
    frames, rest = p1.split_frames(rest + b[100:])
    assert frames == [b] and rest == b""
    # A telegram cut off by the start of the next one comes out as its own (corrupt) frame.
    frames, rest = p1.split_frames(a[:200] + b)
    assert frames == [a[:200], b]
    with pytest.raises(p1.TelegramError):
        p1.parse_telegram(frames[0])


def test_split_frames_never_holds_more_than_one_telegram_of_garbage() -> None:
    for junk in (b"/" + b"x" * (p1.MAX_TELEGRAM + 10), b"/x!" + b"y" * (p1.MAX_TELEGRAM + 10)):
        frames, rest = p1.split_frames(junk)
        assert frames == [] and rest == b""
    assert p1.split_frames(b"no start mark at all") == ([], b"")


def test_frame_adds_a_crc_that_parses() -> None:
    raw = p1.frame("/TEST5\r\n\r\n1-3:0.2.8(50)\r\n1-0:1.7.0(01.500*kW)\r\n!")
    tel = p1.parse_telegram(raw)
    assert tel.version == "5.0" and tel.number("1-0:1.7.0") == (1500.0, "W")


def test_stamps_follow_the_summer_winter_flag() -> None:
    assert p1.parse_stamp("200426223001S") == 1587933001.0
    assert p1.parse_stamp("200101120000W") == 1577876400.0  # 12:00 CET = 11:00 UTC
    assert p1.parse_stamp("700101010000W") is None  # placeholder of an empty channel
    assert p1.parse_stamp("nonsense") is None
    assert p1.parse_stamp(p1.format_stamp(1587933001.0)) == 1587933001.0
