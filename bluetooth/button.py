"""A provisioning button on a GPIO pin, read through /sys/class/gpio (no gpiozero; libgpiod only if present)."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger("ohm.ble")
SOC_CHIPS = ("pinctrl-bcm", "pinctrl-rp1")  # the header pins' chip: Pi 1-4 (BCM283x/2711), Pi 5 (RP1)


class SysfsButton:
    """Edge detection on a sysfs GPIO value file; `poll()` is blocking file I/O (run it in a worker)."""

    def __init__(self, pin: int, root: Path = Path("/sys/class/gpio"), active_low: bool = True) -> None:
        self.pin = pin
        self.root = Path(root)
        self.active_low = active_low
        self._was_pressed: bool | None = None
        self._ready = False
        self._problem_logged = False

    @property
    def number(self) -> int:
        """The sysfs number of the BCM pin: since Linux 6.6 the Pi's GPIO chip starts at 512 (or elsewhere)."""
        for chip in sorted(self.root.glob("gpiochip*")):
            try:
                label = (chip / "label").read_text().strip()
                if label.startswith(SOC_CHIPS):
                    return int((chip / "base").read_text().strip()) + self.pin
            except (OSError, ValueError):
                continue
        return self.pin

    @property
    def value_file(self) -> Path:
        """The sysfs value file of the pin."""
        return self.root / f"gpio{self.number}" / "value"

    def _setup(self) -> None:
        pin_dir = self.root / f"gpio{self.number}"
        if not pin_dir.exists():
            (self.root / "export").write_text(str(self.number))
        direction = pin_dir / "direction"
        if direction.exists() and direction.read_text().strip() != "in":
            direction.write_text("in")
        self._ready = True

    def poll(self) -> bool:
        """True once per press (released -> pressed edge); False otherwise, also when the pin is unreadable."""
        try:
            if not self._ready:
                self._setup()
            raw = self.value_file.read_text().strip()
        except OSError as exc:
            if not self._problem_logged:
                log.warning("button on GPIO %d unreadable (%s); retrying quietly", self.pin, exc.strerror or exc)
                self._problem_logged = True
            self._ready = False
            return False
        if self._problem_logged:
            log.info("button on GPIO %d readable again", self.pin)
            self._problem_logged = False
        pressed = (raw == "0") if self.active_low else (raw == "1")
        edge = pressed and self._was_pressed is False
        self._was_pressed = pressed
        return edge
