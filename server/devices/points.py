"""Canonical point names and their units; profiles map device registers onto these."""

from __future__ import annotations

CANONICAL: dict[str, tuple[str, str]] = {
    "pv.power_w": ("W", "DC power from the PV strings"),
    "pv.energy_wh": ("Wh", "lifetime PV / inverter yield"),
    "inverter.power_w": ("W", "AC active power out of the inverter (negative when it charges from AC)"),
    "inverter.temperature_c": ("degC", "inverter internal / heat-sink temperature"),
    "grid.power_w": ("W", "power at the grid connection: + import, - export"),
    "grid.import_wh": ("Wh", "lifetime energy imported from the grid"),
    "grid.export_wh": ("Wh", "lifetime energy exported to the grid"),
    "grid.voltage_l1_v": ("V", "phase L1 voltage"),
    "grid.current_l1_a": ("A", "phase L1 current"),
    "grid.frequency_hz": ("Hz", "grid frequency"),
    "battery.power_w": ("W", "battery power: + discharge, - charge"),
    "battery.soc_pct": ("%", "battery state of charge"),
    "control.power_limit_pct": ("%", "active power limit in percent of rated power (writable)"),
    "control.power_limit_w": ("W", "active power limit in watts (writable)"),
    "control.max_sell_power_w": ("W", "maximum power exported to the grid (writable)"),
    "control.inverter_on": ("", "inverter remote on/off: 1 on, 0 off (writable)"),
    "control.battery_power_w": ("W", "forced battery power: + charge, - discharge, 0 = inverter's own mode (writable)"),
}
FREE_PREFIXES = ("raw.", "x.")  # device-specific points outside the canonical list


def check_name(name: str, unit: str) -> str | None:
    """Why `name`/`unit` is not acceptable for a point, or None when it is."""
    if name.startswith(FREE_PREFIXES):
        return None
    if name not in CANONICAL:
        return f"{name!r} is not a canonical point name (see docs/devices.md) and has no raw./x. prefix"
    want = CANONICAL[name][0]
    if unit != want:
        return f"{name} is measured in {want!r}, not {unit!r}"
    return None
