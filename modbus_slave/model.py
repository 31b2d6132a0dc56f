"""A deterministic little PV plant: daylight curve, house load, battery, grid, and energy counters.

Values depend only on wall time (from an injectable clock); counters integrate power between
calls, so energy always grows consistently with the power the simulator reports.
"""

from __future__ import annotations

import math

DAY = 86400.0
STEP = 60.0  # integration step in seconds


def daylight(t: float) -> float:
    """0 at night, a half sine from 06:00 to 18:00 UTC peaking at 1.0 at noon."""
    h = (t % DAY) / 3600.0
    if 6.0 < h < 18.0:
        return math.sin(math.pi * (h - 6.0) / 12.0)
    return 0.0


class PlantModel:
    """Canonical point values at a time; counters start at fixed bases at `start`."""

    def __init__(self, start: float, rated_w: float = 5000.0, load_w: float = 800.0) -> None:
        self.rated_w = rated_w
        self.load_w = load_w
        self._t = start
        self.counters = {"pv.energy_wh": 12_345_000.0, "grid.import_wh": 4_321_000.0, "grid.export_wh": 2_468_000.0}
        self.limit_pct = 100.0  # set through writable control points
        self.battery_cmd_w: float | None = None  # forced battery power (+ charge, - discharge); None = own mode
        self.capacity_wh = 10_000.0
        self._soc_offset = 0.0  # forced charging moves SoC away from the daily curve; the shift stays afterwards

    def force_battery(self, watts: float | None, t: float) -> None:
        """Follow a forced charge (+) / discharge (-) command from `t` on; None hands back to self-consumption."""
        self._integrate(t)
        self.battery_cmd_w = watts

    def powers(self, t: float) -> dict[str, float]:
        """Instantaneous powers in W (grid +import, battery +discharge)."""
        pv = self.rated_w * daylight(t) * self.limit_pct / 100.0
        ac = 0.96 * pv
        surplus = ac - self.load_w
        battery = -min(surplus, 2500.0) if surplus > 0 else min(-surplus, 500.0)
        if self.battery_cmd_w is not None:
            soc = self._soc(t)
            full = self.battery_cmd_w > 0 and soc >= 100.0
            empty = self.battery_cmd_w < 0 and soc <= 5.0
            battery = 0.0 if full or empty else -self.battery_cmd_w  # reported + discharge
        grid = self.load_w - ac - battery
        return {"pv.power_w": pv, "inverter.power_w": ac, "battery.power_w": battery, "grid.power_w": grid}

    def _integrate(self, t: float) -> None:
        while self._t < t:
            dt = min(STEP, t - self._t)
            a, b = self.powers(self._t), self.powers(self._t + dt)
            hours = dt / 3600.0
            pv = (a["pv.power_w"] + b["pv.power_w"]) / 2 * hours
            grid = (a["grid.power_w"] + b["grid.power_w"]) / 2 * hours
            self.counters["pv.energy_wh"] += pv
            if self.battery_cmd_w is not None:
                # Forced: SoC follows the commanded energy alone, not the daily curve.
                charged = -(a["battery.power_w"] + b["battery.power_w"]) / 2 * hours
                curve = _curve(self._t + dt) - _curve(self._t)
                self._soc_offset += charged / self.capacity_wh * 100.0 - curve
            if grid > 0:
                self.counters["grid.import_wh"] += grid
            else:
                self.counters["grid.export_wh"] -= grid
            self._t += dt

    def values(self, t: float) -> dict[str, float]:
        """Every canonical point the model knows, at wall time `t` (never earlier than the last call)."""
        self._integrate(t)
        p = self.powers(t)
        volts = 230.0 + 3.0 * math.sin(2 * math.pi * t / 900.0)
        return {
            **p,
            **{k: math.floor(v) for k, v in self.counters.items()},
            "grid.voltage_l1_v": volts,
            "grid.current_l1_a": abs(p["grid.power_w"]) / volts,
            "grid.frequency_hz": 50.0 + 0.03 * math.sin(2 * math.pi * t / 120.0),
            "inverter.temperature_c": 25.0 + 25.0 * daylight(t),
            "battery.soc_pct": self._soc(t),
        }

    def _soc(self, t: float) -> float:
        return max(0.0, min(100.0, _curve(t) + self._soc_offset))


def _curve(t: float) -> float:
    """The SoC of an unforced day: low before dawn, full in the evening."""
    h = (t % DAY) / 3600.0
    return 55.0 - 35.0 * math.cos(2 * math.pi * (h - 3.0) / 24.0)
