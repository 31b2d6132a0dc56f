"""Actions as data, and the checks of a request against the device's profile (pure)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any

from server.devices.profile import Profile, WritableSpec

from .cron import CronError, parse_cron

MAX_DURATION = 7 * 86400.0  # s; a longer hold is a setting, not an action
MIN_LEASE, MAX_LEASE = 5.0, 86400.0
MAX_AHEAD = 366 * 86400.0  # `at` no further ahead than a year
PAST_GRACE = 60.0  # an `at` up to a minute ago (clock skew, slow client) means now

# States. Open ones survive a restart and are picked up again; final ones are history.
SCHEDULED, APPLYING, ACTIVE, REVERTING = "scheduled", "applying", "active", "reverting"
DONE, REVERTED, CANCELLED, FAILED, PREEMPTED, SUPERSEDED, SKIPPED, MISSED = (
    "done",
    "reverted",
    "cancelled",
    "failed",
    "preempted",
    "superseded",
    "skipped",
    "missed",
)
OPEN = frozenset({SCHEDULED, APPLYING, ACTIVE, REVERTING})
BODY_KEYS = frozenset({"device", "point", "value", "duration_s", "at", "repeat", "lease_s"})


class Invalid(ValueError):
    """A request that cannot become an action; the message is the reason (a 422)."""


class Conflict(Exception):
    """The point is held by an owner of higher or equal priority (a 409); the message names the holder."""


@dataclass
class Action:
    """One control action: a value for a device's writable point, now, for a while, or on a schedule."""

    id: str
    device: str
    point: str
    value: float
    who: str
    source: str  # local, backend or schedule (its priority)
    created: float
    state: str
    duration_s: float | None = None
    at: float | None = None  # first run (wall time) of a scheduled action
    repeat: str | None = None  # cron string of a repeating schedule
    lease_s: float | None = None
    next_run: float | None = None  # scheduled: when it fires next
    revert_to: float | None = None  # the value read before (or the safe default), persisted before the write
    revert_from: str | None = None  # "read" (the value before), "safe default", or "inherited" from a hold taken over
    revert_at: float | None = None  # wall time of the timed revert
    lease_until: float | None = None  # wall time the lease watchdog reverts unless renewed
    parent: str | None = None  # the schedule that started this run
    runs: int = 0  # a schedule's runs so far
    result: str | None = None
    audit_id: int | None = None
    updated: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def holds(self) -> bool:
        """Whether this action keeps the point after writing (timed or leased), so it has a revert."""
        return self.duration_s is not None or self.lease_s is not None

    @property
    def scheduled(self) -> bool:
        """Whether this is a schedule (which starts runs) rather than a run."""
        return self.at is not None or self.repeat is not None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (what the API and the store show)."""
        out = asdict(self)
        out.pop("extra")
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Action:
        """Rebuild from `as_dict()` output (unknown keys ignored, for older rows)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class Request:
    """A checked request body (values not yet checked against the profile)."""

    device: str
    point: str
    value: float
    duration_s: float | None = None
    at: float | None = None
    repeat: str | None = None
    lease_s: float | None = None


def _number(body: Mapping[str, Any], key: str) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise Invalid(f"{key}: must be a number, got {value!r}"[:200])
    return float(value)


def parse_time(value: Any, now: float) -> float:
    """`at` as epoch seconds: a number, or an ISO-8601 string (with offset; without one it is local time)."""
    if isinstance(value, bool):
        raise Invalid("at: must be an ISO-8601 time or epoch seconds")
    if isinstance(value, int | float):
        ts = float(value)
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise Invalid(f"at: {value[:64]!r} is not an ISO-8601 time such as 2026-11-24T13:00:00+01:00") from None
        ts = parsed.timestamp()  # naive: the gateway's local time
    else:
        raise Invalid("at: must be an ISO-8601 time or epoch seconds")
    if not math.isfinite(ts) or ts < now - PAST_GRACE:
        raise Invalid("at: lies in the past")
    if ts > now + MAX_AHEAD:
        raise Invalid("at: more than a year ahead")
    return max(ts, now)


def parse_request(body: Mapping[str, Any], now: float) -> Request:
    """Check the shape of a request body (REST or MQTT args); Invalid names the first bad field."""
    if not isinstance(body, Mapping):
        raise Invalid("the action must be an object")
    unknown = sorted(set(body) - BODY_KEYS)
    if unknown:
        raise Invalid(f"unknown field {str(unknown[0])[:64]!r} (expected: {', '.join(sorted(BODY_KEYS))})")
    device, point = body.get("device"), body.get("point")
    if not isinstance(device, str) or not device:
        raise Invalid("device: required (a device id)")
    if not isinstance(point, str) or not point:
        raise Invalid("point: required (a writable point such as control.power_limit_pct)")
    value = _number(body, "value")
    if value is None:
        raise Invalid("value: required (a number in the point's unit)")
    duration = _number(body, "duration_s")
    if duration is not None and not 1 <= duration <= MAX_DURATION:
        raise Invalid(f"duration_s: must be 1-{MAX_DURATION:g} seconds")
    lease = _number(body, "lease_s")
    if lease is not None and not MIN_LEASE <= lease <= MAX_LEASE:
        raise Invalid(f"lease_s: must be {MIN_LEASE:g}-{MAX_LEASE:g} seconds")
    at = parse_time(body["at"], now) if body.get("at") is not None else None
    repeat = body.get("repeat")
    if repeat is not None:
        try:
            repeat = parse_cron(repeat).text
        except CronError as exc:
            raise Invalid(f"repeat: {exc}") from None
    if (at is not None or repeat is not None) and lease is not None:
        raise Invalid("lease_s: a lease belongs to a backend action now, not to a schedule")
    return Request(device[:64], point[:64], value, duration, at, repeat, lease)


def check_value(profile: Profile, point: str, value: float) -> WritableSpec:
    """The writable spec of `point` if `value` is allowed there; Invalid says why not."""
    spec = next((w for w in profile.writable if w.name == point), None)
    if spec is None:
        names = ", ".join(w.name for w in profile.writable) or "none"
        readable = any(p.name == point for p in profile.points)
        why = "is read-only" if readable else "does not exist"
        raise Invalid(f"point: {point!r} {why} on {profile.key} (writable: {names})")
    if not spec.min <= value <= spec.max:
        raise Invalid(f"value: {value:g} is outside {spec.name}'s range [{spec.min:g}, {spec.max:g}] {spec.unit}")
    steps = (value - spec.min) / spec.step
    if abs(steps - round(steps)) > 1e-6:
        raise Invalid(f"value: {value:g} is not a multiple of the step {spec.step:g} from {spec.min:g}")
    return spec


def fit(spec: WritableSpec, value: float | None) -> float:
    """A value read from the device that can be written back; the safe default when it cannot."""
    if value is None:
        return spec.default
    try:
        check_value_spec(spec, value)
    except Invalid:
        return spec.default
    return value


def check_value_spec(spec: WritableSpec, value: float) -> None:
    """Range and step of one spec (Invalid if off)."""
    if not spec.min - 1e-9 <= value <= spec.max + 1e-9:
        raise Invalid(f"{value:g} outside [{spec.min:g}, {spec.max:g}]")
    steps = (value - spec.min) / spec.step
    if abs(steps - round(steps)) > 1e-6:
        raise Invalid(f"{value:g} off the step {spec.step:g}")


def matches(spec: WritableSpec, wanted: float, read: float) -> bool:
    """Whether a read-back value equals what was written, within one register count of resolution."""
    return abs(read - wanted) <= abs(spec.scale) / 2 + 1e-9
