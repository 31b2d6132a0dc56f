"""Write a point and read it back: the device really took it, or a reason why not, retried per the profile.

A composite point (e.g. battery charge/discharge: EMS mode + command + power) is written as its ordered
sequence of register writes; read-back then checks every register of the sequence, and a failure anywhere
retries the whole sequence from its first write.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from server.devices.profile import Quirks, WritableSpec
from server.engine import Duplicate, Engine, EngineStopped, Outcome, Task, TaskClass

from .model import matches

log = logging.getLogger("ohm.control")

Done = Callable[[str | None], None]
Write = tuple[WritableSpec, float]


def io_reason(error: BaseException | None) -> str:
    """A reason without internals for a failed device call."""
    from server.devices.commands import io_reason as reason

    return reason(error)


def register_writes(spec: WritableSpec, value: float) -> tuple[Write, ...]:
    """The ordered (register spec, value) writes that set `value` on `spec` (one for a plain point)."""
    if spec.composite is None:
        return ((spec, value),)
    return spec.composite.writes(value)


def _checks(writes: tuple[Write, ...]) -> list[Write]:
    """Each register of a sequence once, with the last value written to it (what it must show now)."""
    last: dict[int, Write] = {}
    for reg, value in writes:
        last[reg.address] = (reg, value)
    return list(last.values())


class CheckedWriter:
    """Writes through the devices service (on the device's lane), reads back, retries; all as CONTROL tasks."""

    def __init__(self, engine: Engine, devices: Callable[[], Any], retry_gap: float = 0.5) -> None:
        self.engine = engine
        self.devices = devices  # looked up per call: the service may be replaced or gone
        self.retry_gap = retry_gap

    def write(
        self, device: str, spec: WritableSpec, quirks: Quirks, value: float, done: Done, attempt: int = 0
    ) -> None:
        """Write `value` and confirm it; `done(None)` when the device reports it, else `done(reason)` once."""
        writes = register_writes(spec, value)
        composite = spec.composite is not None

        def retry(reason: str) -> None:
            if attempt >= quirks.write_retries:
                done(reason)
                return
            log.info("control: %s on %s: %s; retrying", spec.name, device, reason)
            delay = self.retry_gap * (attempt + 1) + quirks.connect_delay
            self._later(delay, lambda now: self.write(device, spec, quirks, value, done, attempt + 1), "control.retry")

        def where(reg: WritableSpec) -> str:
            return f" to {reg.name} (register {reg.address})" if composite else ""

        checks = _checks(writes)

        def read_back(i: int, outcome: Outcome[Any]) -> None:
            reg, wanted = checks[i]
            if not outcome.ok:
                retry(f"read-back failed{where(reg)}: {io_reason(outcome.error)}")
                return
            raw = outcome.value.get("value")
            got = None if raw is None else raw * reg.scale
            if got is None or not matches(reg, wanted, got):
                shown = "nothing" if got is None else f"{got:g}"
                retry(f"read-back mismatch: wrote {wanted:g}{where(reg)}, device reports {shown}")
                return
            read(i + 1)

        def read(i: int = 0) -> None:
            if i == len(checks):
                done(None)
                return
            reg = checks[i][0]
            try:
                self.devices().read_raw(
                    device, 3, reg.address, reg.count, lambda o: read_back(i, o), type=reg.type, words=reg.words
                )
            except (ValueError, KeyError) as exc:
                done(str(exc))

        def written(i: int, outcome: Outcome[Any]) -> None:
            if not outcome.ok:
                retry(io_reason(outcome.error) + (f" (writing {writes[i][0].name})" if composite else ""))
            else:
                send(i + 1)

        def send(i: int = 0) -> None:
            if i == len(writes):
                if quirks.write_settle > 0:  # some inverters report the new value only after a moment
                    self._later(quirks.write_settle, lambda now: read(), "control.readback")
                else:
                    read()
                return
            reg, v = writes[i]
            try:
                self.devices().write_raw(device, reg.address, v, lambda o: written(i, o))
            except (ValueError, KeyError) as exc:  # WriteRejected, DeviceConfigError (disabled), device removed
                done(str(exc))

        send()

    def read_value(self, device: str, spec: WritableSpec, then: Callable[[float | None], None]) -> None:
        """Read the point's current value (None when unreadable or, for a composite, no sequence matches).

        The first request raises ValueError/KeyError like the devices service (unknown or disabled device).
        """
        regs = [(role, reg) for role, reg in spec.composite.registers] if spec.composite else [("", spec)]
        got: dict[str, float | None] = {}

        def finish() -> None:
            if spec.composite is None:
                then(got[""])
            else:
                then(spec.composite.decode(got))

        def one(i: int, outcome: Outcome[Any]) -> None:
            role, reg = regs[i]
            raw = outcome.value.get("value") if outcome.ok else None
            got[role] = None if raw is None else raw * reg.scale
            if got[role] is None or i + 1 == len(regs):
                finish()
                return
            try:
                ask(i + 1)
            except (ValueError, KeyError):
                then(None)

        def ask(i: int) -> None:
            reg = regs[i][1]
            self.devices().read_raw(
                device, 3, reg.address, reg.count, lambda o: one(i, o), type=reg.type, words=reg.words
            )

        ask(0)

    def _later(self, delay: float, fn: Callable[[float], Any], kind: str) -> None:
        try:
            self.engine.submit(Task(fn, kind=kind, cls=TaskClass.CONTROL, on_duplicate=Duplicate.ALLOW), delay=delay)
        except EngineStopped:
            log.debug("%s dropped: shutting down", kind)
