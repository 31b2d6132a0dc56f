"""Pure logic: cron parsing and next runs, request checks, arbitration."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from server.control.arbitration import Hold, arbitrate
from server.control.cron import CronError, parse_cron
from server.control.model import Invalid, check_value, fit, matches, parse_request
from server.devices.profile import load_profile


def ts(text: str, tz: str = "UTC") -> float:
    """Epoch seconds of a wall time in a zone."""
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz)).timestamp()


@pytest.mark.parametrize(
    ("cron", "after", "expected"),
    [
        ("0 13 * * *", "2026-11-23 12:00", "2026-11-23 13:00"),
        ("0 13 * * *", "2026-11-23 13:00", "2026-11-24 13:00"),  # strictly after
        ("*/15 * * * *", "2026-11-23 12:07", "2026-11-23 12:15"),
        ("30 6 * * 1-5", "2026-11-28 07:00", "2026-11-30 06:30"),  # Saturday -> Monday
        ("0 0 1 * *", "2026-11-23 00:00", "2026-12-01 00:00"),
        ("0 0 29 2 *", "2026-03-01 00:00", "2028-02-29 00:00"),  # leap day
        ("0 12 1 * 0", "2026-11-23 00:00", "2026-11-29 12:00"),  # day OR weekday when both are set
        ("5 4 * * 7", "2026-11-23 00:00", "2026-11-29 04:05"),  # 7 is Sunday too
        ("0 8,17 * 1-3,11 *", "2026-11-23 09:00", "2026-11-23 17:00"),
    ],
)
def test_cron_next_run(cron: str, after: str, expected: str) -> None:
    assert parse_cron(cron).next_after(ts(after), UTC) == ts(expected)


def test_cron_local_time_and_dst() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    # 13:00 in Berlin is 12:00 UTC in winter.
    assert parse_cron("0 13 * * *").next_after(ts("2026-11-23 10:00"), berlin) == ts("2026-11-23 12:00")
    # 02:30 does not exist on the spring-forward day: that day is skipped.
    assert parse_cron("30 2 * * *").next_after(ts("2026-03-29 00:00", "Europe/Berlin"), berlin) == ts(
        "2026-03-30 02:30", "Europe/Berlin"
    )
    assert parse_cron("30 2 31 2 *").next_after(0.0, UTC) is None  # never


@pytest.mark.parametrize(
    ("cron", "reason"),
    [
        ("* * * *", "needs 5 fields"),
        ("60 * * * *", "minute: '60' must lie within 0-59"),
        ("* 24 * * *", "hour"),
        ("* * 0 * *", "day of month"),
        ("*/0 * * * *", "step '0' must be a positive number"),
        ("a * * * *", "is not a number"),
        ("5-1 * * * *", "must lie within"),
        ("* * * * 8", "day of week"),
    ],
)
def test_cron_errors_name_the_field(cron: str, reason: str) -> None:
    with pytest.raises(CronError, match=reason):
        parse_cron(cron)


NOW = 1_800_000_000.0


def test_requests_parse_times_and_forms() -> None:
    r = parse_request({"device": "d", "point": "p", "value": 5, "at": "2027-01-15T08:00:00Z"}, NOW)
    assert r.at == ts("2027-01-15 08:00") and r.value == 5.0
    assert parse_request({"device": "d", "point": "p", "value": 1, "at": NOW - 30}, NOW).at == NOW  # slight skew
    r = parse_request({"device": "d", "point": "p", "value": 1, "repeat": " 0  13 * * * "}, NOW)
    assert r.repeat == "0 13 * * *"
    with pytest.raises(Invalid, match="lease_s: a lease belongs"):
        parse_request({"device": "d", "point": "p", "value": 1, "repeat": "* * * * *", "lease_s": 60}, NOW)
    with pytest.raises(Invalid, match="more than a year"):
        parse_request({"device": "d", "point": "p", "value": 1, "at": NOW + 400 * 86400}, NOW)
    with pytest.raises(Invalid, match="value: must be a number"):
        parse_request({"device": "d", "point": "p", "value": float("nan")}, NOW)


def test_values_are_checked_against_the_profile() -> None:
    fronius = load_profile("fronius")
    spec = check_value(fronius, "control.power_limit_pct", 40)
    assert spec.address == 40242
    with pytest.raises(Invalid, match="not a multiple of the step 1"):
        check_value(fronius, "control.power_limit_pct", 40.5)
    deye = load_profile("deye")
    with pytest.raises(Invalid, match="step 10"):
        check_value(deye, "control.max_sell_power_w", 15)
    growatt = load_profile("growatt")
    assert check_value(growatt, "control.inverter_on", 0).default == 1
    # A read-back value that cannot be written back is replaced by the safe default.
    assert fit(spec, 55.0) == 55.0 and fit(spec, 55.37) == 100.0 and fit(spec, None) == 100.0
    assert matches(spec, 40.0, 40.004) and not matches(spec, 40.0, 40.02)  # scale 0.01 %


def test_arbitration_table() -> None:
    def hold(who: str, source: str) -> Hold:
        return Hold("a1", who, source, None)

    cases = [
        (None, "admin", "local", "free"),
        (hold("admin", "local"), "admin", "local", "replace"),
        (hold("backend", "backend"), "admin", "local", "preempt"),
        (hold("schedule:1", "schedule"), "backend", "backend", "preempt"),
        (hold("admin", "local"), "homeassistant", "local", "conflict"),
        (hold("admin", "local"), "backend", "backend", "conflict"),
        (hold("schedule:1", "schedule"), "schedule:2", "schedule", "conflict"),
    ]
    for holder, who, source, outcome in cases:
        assert arbitrate(holder, who, source).outcome == outcome, (holder, who, source)
    assert "held by admin (local priority, action a1)" in arbitrate(hold("admin", "local"), "x", "backend").detail
