"""One poller per device: an engine task that reads the planned registers on the device's lane.

Each read request is its own lane job, so the lane's gap paces requests on a bus without a worker
sleeping. A poll publishes one immutable Snapshot; a failure marks the last values stale, resets the
link and retries with jittered backoff capped at `backoff_cap`, so a device that comes back is read
again within that cap (plus one read). State changes become DeviceEvents, logged once each.
"""

from __future__ import annotations

import logging
import random
from collections import deque
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from server.bus import Bus, DeviceEvent, Point, Quality, Snapshot
from server.engine import Engine, Outcome, Task, TaskClass

from . import meters, sunspec
from .codec import decode
from .plan import Read, plan_profile
from .profile import Profile
from .transport import DeviceIOError, Endpoint, ExceptionReply

log = logging.getLogger("ohm.devices")

MIN_INTERVAL = 1.0


@dataclass
class Health:
    """How a device has been doing (for the API and the dashboard)."""

    online: bool = False
    state: str = "new"  # new, online, offline
    polls: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    last_ok: float | None = None  # wall time
    last_error: str | None = None
    last_read_ms: float = 0.0
    skipped: int = 0  # polls skipped because the previous one was still running
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {
            **self.extra,
            "online": self.online,
            "state": self.state,
            "polls": self.polls,
            "failures": self.failures,
            "consecutive_failures": self.consecutive_failures,
            "last_ok": self.last_ok,
            "last_error": self.last_error,
            "last_read_ms": round(self.last_read_ms, 2),
            "skipped": self.skipped,
        }


class Poller:
    """Polls one device at its interval and publishes snapshots to the bus."""

    def __init__(
        self,
        engine: Engine,
        bus: Bus,
        device_id: str,
        profile: Profile,
        endpoint: Endpoint,
        *,
        unit: int,
        interval: float = 10.0,
        backoff_base: float = 1.0,
        backoff_cap: float = 10.0,
        rng: random.Random | None = None,
    ) -> None:
        self.engine = engine
        self.bus = bus
        self.device_id = device_id
        self.profile = profile
        self.endpoint = endpoint
        self.unit = unit
        self.interval = max(MIN_INTERVAL, interval)
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self._rng = rng or random.Random()
        self.health = Health()
        # Meters (P1, HomeWizard, Envoy) fetch one document per poll instead of planned register reads.
        self._meter = profile if isinstance(profile, meters.MeterProfile) else None
        self._meter_points: dict[str, Point] = {}
        self._resolved: Profile | None = None if profile.sunspec or self._meter else profile
        self._reads: list[Read] = plan_profile(profile) if not (profile.sunspec or self._meter) else []
        self._task = Task(self._tick, kind="devices.poll", name=f"devices.poll.{device_id}", cls=TaskClass.HARVEST)
        self._next_due: float | None = None
        self._in_flight = False
        self._stopped = False
        self._last_points: dict[str, Point] = {}
        self.lateness: deque[float] = deque(maxlen=512)  # seconds each poll started after its slot
        self.on_pin: Any = None  # called (in a worker) with a certificate fingerprint pinned on first use

    # ---- scheduling ---------------------------------------------------------------------

    def start(self, delay: float = 0.0) -> None:
        """Begin polling after `delay` seconds."""
        self._stopped = False
        self._next_due = self.engine.clock.monotonic() + delay
        self._schedule(self._next_due)

    def stop(self) -> None:
        """Stop polling (a read in flight finishes and is dropped)."""
        self._stopped = True
        self.engine.cancel(self._task)

    def _schedule(self, due: float) -> None:
        if self._stopped:
            return
        self._task.due = due
        self.engine.submit(self._task)

    def _tick(self, now: float) -> None:
        self.lateness.append(now - (self._next_due if self._next_due is not None else now))
        if self._in_flight:  # the previous poll is still on the lane: do not queue a second one
            self.health.skipped += 1
            return
        self._in_flight = True
        self._started = now
        self._poll_regs: dict[tuple[int, int], int] = {}
        self._poll_error: BaseException | None = None
        if self._meter is not None:
            self.engine.offload(
                self._meter_job, self._meter_done, kind="devices.meter", cls=TaskClass.HARVEST, lane=self.endpoint.lane
            )
            return
        if self._resolved is None:
            self.engine.offload(self._sunspec_job, self._sunspec_done, kind="devices.sunspec", lane=self.endpoint.lane)
            return
        self._submit_reads()

    # ---- reading (jobs run on the endpoint's lane, in a worker) ---------------------------

    def _meter_job(self) -> dict[str, Point]:
        assert self._meter is not None
        try:
            document = self.endpoint.ensure(self.unit).fetch()  # type: ignore[attr-defined]
        except DeviceIOError:
            self.endpoint.reset()
            raise
        except Exception as exc:  # noqa: BLE001 - any other client failure is a link failure too
            self.endpoint.reset()
            raise DeviceIOError(f"{type(exc).__name__}: {exc}") from None
        finally:
            if self.endpoint.link.transport.startswith("p1_"):
                from .p1_transport import rejected

                self.health.extra["rejected_telegrams"] = rejected(self.endpoint.link.key)
        pin, hook = getattr(self.endpoint.client, "new_pin", None), self.on_pin
        if pin and hook is not None:
            self.on_pin = None  # once: the service keeps the certificate and restarts this poller with it
            hook(pin)
        return meters.decode(self._meter, document)

    def _meter_done(self, outcome: Outcome[dict[str, Point]]) -> None:
        if outcome.ok:
            self._meter_points = outcome.value or {}
        self._finish(error=None if outcome.ok else outcome.error)

    def _sunspec_job(self) -> dict[int, int]:
        def read(address: int, count: int) -> list[int]:
            client = self.endpoint.ensure(self.unit)
            return client.read(3, address, count, self.unit)

        try:
            base = sunspec.find_base(read, (self.profile.sunspec_base, *sunspec.BASES))
            return sunspec.walk(read, base)
        except DeviceIOError:
            self.endpoint.reset()
            raise

    def _sunspec_done(self, outcome: Outcome[dict[int, int]]) -> None:
        if not outcome.ok:
            self._finish(error=outcome.error)
            return
        self._resolved = self.profile.resolved(outcome.value or {})
        self._reads = plan_profile(self._resolved)
        self.health.extra["sunspec_models"] = sorted(outcome.value or {})
        self._submit_reads()

    def _submit_reads(self) -> None:
        reads = self._reads
        if not reads:
            self._finish()
            return
        remaining = [len(reads)]
        for r in reads:
            self.engine.offload(
                lambda r=r: self._read_job(r),
                lambda outcome, left=remaining: self._read_done(outcome, left),
                kind="devices.read",
                cls=TaskClass.HARVEST,
                lane=self.endpoint.lane,
            )

    def _read_job(self, r: Read) -> dict[tuple[int, int], int]:
        if self._poll_error is not None or self._stopped:
            raise DeviceIOError("skipped after an earlier failure in this poll")
        try:
            client = self.endpoint.ensure(self.unit)
            regs = client.read(r.fc, r.address, r.count, self.unit)
        except ExceptionReply as exc:
            if exc.code != 2:  # busy / device failure: the device is unwell, give up this poll
                self._poll_error = exc
            raise  # illegal address: those points become n/a, the rest of the poll goes on
        except DeviceIOError as exc:
            self._poll_error = exc
            self.endpoint.reset()
            raise
        except Exception as exc:  # noqa: BLE001 - any other client failure is a link failure too
            self._poll_error = DeviceIOError(f"{type(exc).__name__}: {exc}")
            self.endpoint.reset()
            raise self._poll_error from None
        return {(r.fc, r.address + i): v for i, v in enumerate(regs)}

    def _read_done(self, outcome: Outcome[dict[tuple[int, int], int]], remaining: list[int]) -> None:
        remaining[0] -= 1
        if outcome.ok and outcome.value:
            self._poll_regs.update(outcome.value)
        if remaining[0] == 0:
            error = self._poll_error
            if error is None and not self._poll_regs:
                error = outcome.error or DeviceIOError("no register could be read")
            self._finish(error=error)

    # ---- results --------------------------------------------------------------------------

    def _finish(self, error: BaseException | None = None) -> None:
        self._in_flight = False
        now = self.engine.clock.monotonic()
        wall = self.engine.clock.time()
        h = self.health
        h.polls += 1
        h.last_read_ms = (now - self._started) * 1000.0
        if self._stopped:
            return
        if error is None:
            if self._meter is not None:
                points = self._meter_points
            else:
                points = decode(self._resolved, self._poll_regs) if self._resolved else {}
            self._last_points = dict(points)
            snap = Snapshot(self.device_id, wall, now, True, points, self.profile.key)
            was = h.state
            h.online, h.state, h.consecutive_failures, h.last_ok, h.last_error = True, "online", 0, wall, None
            self.bus.publish(snap)
            if was != "online":
                kind = "recovered" if was == "offline" else "online"
                log.info("device %s %s", self.device_id, kind)
                self.bus.emit(DeviceEvent(kind, wall, self.device_id, MappingProxyType({"profile": self.profile.key})))
            assert self._next_due is not None
            nxt = self._next_due + self.interval
            if nxt <= now:  # missed slots are skipped, keeping the phase
                nxt += ((now - nxt) // self.interval + 1) * self.interval
            self._next_due = nxt
            self._schedule(nxt)
            return
        msg = str(error) or type(error).__name__
        stale = {k: replace(p, quality=Quality.STALE) for k, p in self._last_points.items()}
        snap = Snapshot(self.device_id, wall, now, False, MappingProxyType(stale), self.profile.key, error=msg)
        was = h.state
        h.online, h.state, h.last_error = False, "offline", msg
        h.failures += 1
        h.consecutive_failures += 1
        self.bus.publish(snap)
        if was != "offline":
            log.warning("device %s offline: %s", self.device_id, msg)
            self.bus.emit(DeviceEvent("offline", wall, self.device_id, MappingProxyType({"error": msg})))
        else:
            log.debug("device %s still offline: %s", self.device_id, msg)
        delay = min(self.backoff_cap, self.backoff_base * 2 ** (h.consecutive_failures - 1))
        delay *= 0.5 + self._rng.random() * 0.5  # jitter: never all devices at once
        delay = max(delay, min(self.interval, 0.2))
        self._next_due = now + delay
        self._schedule(self._next_due)

    def snapshot(self) -> Snapshot | None:
        """The latest snapshot of this device."""
        latest = self.bus.latest(self.device_id)
        return latest if isinstance(latest, Snapshot) else None
