"""Fault injection as data: what the simulated device does wrong, and how often."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

MODES = ("none", "delay", "exception", "drop", "garbage", "silent", "down", "flap")


class FaultError(ValueError):
    """A fault spec could not be parsed."""


@dataclass
class Fault:
    """One fault mode.

    - delay: answer `value` seconds late
    - exception: answer with Modbus exception code `value` (e.g. 4 device failure, 6 busy)
    - drop: close the connection instead of answering
    - garbage: answer with random bytes
    - silent: swallow the request (a real RS-485 slave that is off)
    - down: refuse service entirely (TCP: close at once; RTU: silent)
    - flap: alternate `up` seconds working and `down` seconds down (a disconnect pattern)
    `rate` is the share of requests affected (deterministic from `seed`).
    """

    mode: str = "none"
    value: float = 0.0
    rate: float = 1.0
    up: float = 5.0
    down: float = 5.0
    seed: int = 1

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise FaultError(f"unknown fault {self.mode!r} (one of {', '.join(MODES)})")
        if not 0.0 <= self.rate <= 1.0:
            raise FaultError("fault rate must be between 0 and 1")
        self._rng = random.Random(self.seed)

    def hits(self) -> bool:
        """Whether this request is affected."""
        return self.mode != "none" and (self.rate >= 1.0 or self._rng.random() < self.rate)

    def is_down(self, now: Callable[[], float] = time.monotonic) -> bool:
        """Whether the device is unreachable right now (down, or in a flap's down phase)."""
        if self.mode == "down":
            return True
        if self.mode == "flap":
            return (now() % (self.up + self.down)) >= self.up
        return False

    def garbage(self, n: int = 9) -> bytes:
        """Random bytes to answer with."""
        return bytes(self._rng.randrange(256) for _ in range(n))


def parse_fault(spec: str) -> Fault:
    """'delay=0.5', 'exception=6', 'drop', 'garbage@0.2', 'silent', 'down', 'flap=3/2' -> Fault."""
    spec = spec.strip()
    rate = 1.0
    if "@" in spec:
        spec, _, r = spec.partition("@")
        try:
            rate = float(r)
        except ValueError:
            raise FaultError(f"bad fault rate {r!r}: use e.g. garbage@0.2") from None
    mode, _, arg = spec.partition("=")
    try:
        if mode == "flap":
            up, _, down = (arg or "5/5").partition("/")
            return Fault("flap", up=float(up), down=float(down or up), rate=rate)
        value = float(arg) if arg else (4.0 if mode == "exception" else 0.0)
    except ValueError:
        raise FaultError(f"bad fault value in {spec!r}") from None
    return Fault(mode, value=value, rate=rate)
