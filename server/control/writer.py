"""Write a point and read it back: the device really took it, or a reason why not, retried per the profile."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from server.devices.profile import Quirks, WritableSpec
from server.engine import Duplicate, Engine, EngineStopped, Outcome, Task, TaskClass

from .model import matches

log = logging.getLogger("ohm.control")

Done = Callable[[str | None], None]


def io_reason(error: BaseException | None) -> str:
    """A reason without internals for a failed device call."""
    from server.devices.commands import io_reason as reason

    return reason(error)


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

        def retry(reason: str) -> None:
            if attempt >= quirks.write_retries:
                done(reason)
                return
            log.info("control: %s on %s: %s; retrying", spec.name, device, reason)
            delay = self.retry_gap * (attempt + 1) + quirks.connect_delay
            self._later(delay, lambda now: self.write(device, spec, quirks, value, done, attempt + 1), "control.retry")

        def read_back(outcome: Outcome[Any]) -> None:
            if not outcome.ok:
                retry(f"read-back failed: {io_reason(outcome.error)}")
                return
            raw = outcome.value.get("value")
            got = None if raw is None else raw * spec.scale
            if got is None or not matches(spec, value, got):
                shown = "nothing" if got is None else f"{got:g}"
                retry(f"read-back mismatch: wrote {value:g}, device reports {shown}")
                return
            done(None)

        def read(now: float = 0.0) -> None:
            try:
                self.devices().read_raw(
                    device, 3, spec.address, spec.count, read_back, type=spec.type, words=spec.words
                )
            except (ValueError, KeyError) as exc:
                done(str(exc))

        def written(outcome: Outcome[Any]) -> None:
            if not outcome.ok:
                retry(io_reason(outcome.error))
            elif quirks.write_settle > 0:  # some inverters report the new limit only after a moment
                self._later(quirks.write_settle, read, "control.readback")
            else:
                read()

        try:
            self.devices().write_raw(device, spec.address, value, written)
        except (ValueError, KeyError) as exc:  # WriteRejected, DeviceConfigError (disabled), device removed
            done(str(exc))

    def _later(self, delay: float, fn: Callable[[float], Any], kind: str) -> None:
        try:
            self.engine.submit(Task(fn, kind=kind, cls=TaskClass.CONTROL, on_duplicate=Duplicate.ALLOW), delay=delay)
        except EngineStopped:
            log.debug("%s dropped: shutting down", kind)
