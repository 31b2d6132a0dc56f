"""The control service: runs actions as CONTROL engine tasks, holds points, reverts on time, after a crash too.

Flow of one action: arbitration claims the point at once (so a conflict is answered synchronously),
then engine tasks read the value before (for the revert), persist the action with its revert
(BEFORE the write), write, read back with retries per the profile's quirks, and arm the revert and
lease timers. Schedules fire runs of their own. Every step is saved on the "control.store" lane;
at start the open actions are loaded and resumed (overdue reverts run at once).
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections import deque
from collections.abc import Callable, Mapping
from datetime import tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any

from server.bus import Bus, DeviceEvent
from server.devices.meters import load_any_profile as load_profile  # Modbus or meter (P1, HomeWizard, Envoy)
from server.devices.profile import ProfileError, WritableSpec
from server.engine import Duplicate, Engine, EngineStopped, Outcome, Task, TaskClass

from .arbitration import PRIORITY, Hold, arbitrate, describe
from .cron import parse_cron
from .model import (
    ACTIVE,
    APPLYING,
    CANCELLED,
    DONE,
    FAILED,
    MISSED,
    PREEMPTED,
    REVERTED,
    REVERTING,
    SCHEDULED,
    SKIPPED,
    SUPERSEDED,
    Action,
    Conflict,
    Invalid,
    check_value,
    fit,
    parse_request,
)
from .store import ActionStore
from .writer import CheckedWriter

if TYPE_CHECKING:
    from server.gateway import Gateway

log = logging.getLogger("ohm.control")

MISSED_GRACE = 3600.0  # s: a one-off schedule missed while the gateway was down still runs if this recent
KEEP_RECENT = 200  # finished actions kept in memory for GET by id
REVERT_RETRY_CAP = 60.0  # s between attempts of a revert that keeps failing (it never gives up)

Settled = Callable[[dict[str, Any]], None]


class ControlService:
    """Owns actions, point holds and their timers; see the module docstring. Thread-safe."""

    def __init__(
        self,
        engine: Engine,
        bus: Bus,
        services: Mapping[str, Any],
        store: ActionStore | None = None,
        *,
        tz: tzinfo | None = None,
        retry_gap: float = 0.5,
    ) -> None:
        self.engine = engine
        self.bus = bus
        self.services = services  # gateway.services: devices and audit are looked up when needed
        self.store = store
        self.tz = tz
        self._lock = threading.RLock()
        self._actions: dict[str, Action] = {}  # open actions
        self._recent: deque[Action] = deque(maxlen=KEEP_RECENT)
        self._holds: dict[tuple[str, str], Hold] = {}
        self._waiters: dict[str, list[Settled]] = {}
        self._lane = engine.lane("control.store", cls=TaskClass.CONTROL)
        self.counters = {"applied": 0, "failed": 0, "reverted": 0, "conflicts": 0}
        self.writer = CheckedWriter(engine, self._devices, retry_gap)
        self._value_listeners: list[Callable[[str, str, float], None]] = []

    @property
    def retry_gap(self) -> float:
        """Seconds between write attempts (times the attempt); reverts back off from it too."""
        return self.writer.retry_gap

    @retry_gap.setter
    def retry_gap(self, value: float) -> None:
        self.writer.retry_gap = value

    # ---- public ---------------------------------------------------------------------------

    def submit(self, body: Mapping[str, Any], who: str, source: str, on_settled: Settled | None = None) -> Action:
        """Validate and start an action; Invalid (422) or Conflict (409) at once, the rest as engine tasks."""
        if source not in PRIORITY:
            raise ValueError(f"unknown source {source!r}")
        now = self._wall()
        req = parse_request(body, now)
        self._spec(req.device, req.point, req.value)
        action = Action(
            id="a" + secrets.token_hex(5),
            device=req.device,
            point=req.point,
            value=req.value,
            who=who[:128],
            source=source,
            created=now,
            state=APPLYING,
            duration_s=req.duration_s,
            at=req.at,
            repeat=req.repeat,
            lease_s=req.lease_s,
        )
        if on_settled is not None:
            self._waiters[action.id] = [on_settled]
        if action.scheduled:
            with self._lock:
                action.state = SCHEDULED
                action.next_run = req.at if req.at is not None else self._next_cron(action, now)
                self._actions[action.id] = action
                action.audit_id = self._audit_record(action, "scheduled", f"schedule {self._what(action)}")
                self._arm_schedule(action)
            self._save(action, lambda outcome: self._settle(action))  # answered once it is on disk
            return action
        try:
            self._claim(action)
        except Conflict:
            self._waiters.pop(action.id, None)
            raise
        return action

    def cancel(self, action_id: str, who: str, source: str) -> Action:
        """Cancel a schedule, or end a held action early (it reverts); KeyError unknown, Conflict not allowed."""
        with self._lock:
            action = self._actions.get(action_id)
            if action is None:
                if any(a.id == action_id for a in self._recent):
                    raise Invalid(f"action {action_id} has already finished")
                raise KeyError(action_id)
            if PRIORITY[source] < PRIORITY[action.source]:
                raise Conflict(f"action {action_id} belongs to {action.who} ({action.source} priority)")
            if action.state == SCHEDULED:
                self.engine.cancel(f"control.schedule.{action.id}")
                self._finish(action, CANCELLED, f"cancelled by {who}")
                self._audit_update(action, result=f"cancelled by {who}")
                return action
            if action.state == APPLYING:
                action.extra["cancel"] = who  # the apply step sees it and reverts (or stops)
                return action
            if action.state == ACTIVE:
                self._begin_revert(action, f"cancelled by {who}", final=CANCELLED)
            return action

    def renew(self, who: str, action_id: str | None = None) -> list[Action]:
        """Extend the leases `who` holds (all, or one); the watchdog reverts those not renewed in time."""
        now = self._wall()
        renewed = []
        with self._lock:
            for action in list(self._actions.values()):
                if action.lease_s is None or action.state not in (APPLYING, ACTIVE) or action.who != who:
                    continue
                if action_id is not None and action.id != action_id:
                    continue
                action.lease_until = now + action.lease_s
                self._set_hold_until(action)
                renewed.append(action)
                self._save(action)
                self._arm_lease(action)
        if action_id is not None and not renewed:
            raise KeyError(action_id)
        return renewed

    def get(self, action_id: str) -> Action | None:
        """An open or recently finished action."""
        with self._lock:
            if action_id in self._actions:
                return self._actions[action_id]
            return next((a for a in self._recent if a.id == action_id), None)

    def listing(self) -> dict[str, list[dict[str, Any]]]:
        """Open actions: `active` (applying, holding, reverting) and `scheduled`."""
        with self._lock:
            items = sorted(self._actions.values(), key=lambda a: a.created)
            return {
                "active": [a.as_dict() for a in items if a.state != SCHEDULED],
                "scheduled": [a.as_dict() for a in items if a.state == SCHEDULED],
            }

    def points(self) -> list[dict[str, Any]]:
        """Every writable point of every enabled device, with its limits and current holder."""
        devices = self.services.get("devices")
        out: list[dict[str, Any]] = []
        if devices is None:
            return out
        for cfg in devices.list():
            if not cfg.get("enabled", True):
                continue
            try:
                profile = load_profile(cfg["profile"])
            except ProfileError:
                continue
            for w in profile.writable:
                with self._lock:
                    hold = self._holds.get((cfg["id"], w.name))
                out.append(
                    {
                        "device": cfg["id"],
                        "point": w.name,
                        "unit": w.unit,
                        "min": w.min,
                        "max": w.max,
                        "step": w.step,
                        "safe_default": w.default,
                        "writable": True,
                        "held_by": hold.as_dict() if hold else None,
                    }
                )
        return out

    def on_value(self, listener: Callable[[str, str, float], None]) -> None:
        """Call `listener(device, point, value)` whenever a write or revert was confirmed by read-back."""
        self._value_listeners.append(listener)

    def _value_taken(self, action: Action, value: float) -> None:
        for listener in list(self._value_listeners):
            try:
                listener(action.device, action.point, value)
            except Exception:  # a broken listener (e.g. a dropped HA connection) must not break the action
                log.exception("control: value listener failed")

    def holder(self, device: str, point: str) -> Hold | None:
        """Who holds a point now."""
        with self._lock:
            return self._holds.get((device, point))

    def stats(self) -> dict[str, Any]:
        """Counters and open actions."""
        with self._lock:
            return {**self.counters, "open": len(self._actions), "held_points": len(self._holds)}

    # ---- start: resume what was open --------------------------------------------------------

    def start(self) -> None:
        """Load open actions and resume them: holds back, overdue reverts and schedules at once."""
        if self.store is None:
            return
        now = self._wall()
        loaded = self.store.load_open()
        with self._lock:
            for action in loaded:
                self._actions[action.id] = action
                if action.state == SCHEDULED:
                    self._resume_schedule(action, now)
                    continue
                if action.state == APPLYING and not (action.holds and action.revert_to is not None):
                    # Crashed between claim and write with nothing to undo: the write is unconfirmed.
                    self._finish(action, FAILED, "interrupted by a restart before the write was confirmed")
                    continue
                self._holds[(action.device, action.point)] = Hold(action.id, action.who, action.source, None)
                if action.state == REVERTING:
                    self.engine.call_soon(
                        lambda now, a=action: self._revert_write(a), kind="control.revert", cls=TaskClass.CONTROL
                    )
                    continue
                action.state = ACTIVE  # an APPLYING one with a persisted revert: treat as held, revert on time
                self._set_hold_until(action)
                self._arm_revert(action)
                self._arm_lease(action)
        if loaded:
            log.info("control: resumed %d open actions", len(loaded))

    def close(self) -> None:
        """Close the store (shutdown hook; open actions stay on disk for the next start)."""
        if self.store is not None:
            self.store.close()

    # ---- running an action ----------------------------------------------------------------

    def _claim(self, action: Action) -> None:
        """Arbitrate and take the point (Conflict if held by an equal or higher owner), then start applying."""
        key = (action.device, action.point)
        with self._lock:
            hold = self._holds.get(key)
            reverting = self._actions.get(hold.action_id) if hold is not None else None
            if reverting is not None and reverting.state == REVERTING:
                # Its undo write is on its way to the device; a new value now could land before it.
                self.counters["conflicts"] += 1
                raise Conflict(f"{describe(hold)}: being reverted right now; try again in a moment")
            decision = arbitrate(hold, action.who, action.source)
            if not decision.allowed:
                self.counters["conflicts"] += 1
                raise Conflict(decision.detail)
            if hold is not None:
                old = self._actions.get(hold.action_id)
                if old is not None:
                    if old.revert_to is not None:
                        # The newcomer undoes to what was there before anyone held the point.
                        action.revert_to = old.revert_to
                        action.revert_from = "inherited"
                        action.extra["inherited"] = old.id
                        if not action.holds:
                            # A plain new value for a held point keeps the hold's timer and lease.
                            action.duration_s, action.lease_s = old.duration_s, old.lease_s
                            action.revert_at, action.lease_until = old.revert_at, old.lease_until
                    state = SUPERSEDED if decision.outcome == "replace" else PREEMPTED
                    self._cancel_timers(old)
                    self._finish(old, state, f"{state} by {action.id} ({action.who})", release=False)
                    self._audit_update(old, result=f"{state} by {action.who}", revert=f"handed to {action.id}")
            self._holds[key] = Hold(action.id, action.who, action.source, None)
            action.state = APPLYING
            self._actions[action.id] = action
            action.audit_id = self._audit_record(action, "applying", f"set {self._what(action)}")
        self._task(lambda now: self._prepare(action), "control.apply")

    def _prepare(self, action: Action) -> None:
        spec = self._spec_quiet(action)
        if spec is None:
            self._applied(action, "the device or its point is gone")
            return
        if not action.holds or action.revert_to is not None:
            self._persist_and_write(action)
            return

        def read_before(value: float | None) -> None:
            action.revert_to = fit(spec, value)
            action.revert_from = "read" if value is not None and action.revert_to == value else "safe default"
            self._persist_and_write(action)

        try:
            # A composite point (battery) reads all its registers; a state no sequence matches -> safe default.
            self.writer.read_value(action.device, spec, read_before)
        except (ValueError, KeyError) as exc:
            self._applied(action, str(exc))

    def _persist_and_write(self, action: Action) -> None:
        now = self._wall()
        if action.duration_s is not None and action.revert_at is None:
            action.revert_at = now + action.duration_s
        if action.lease_s is not None and action.lease_until is None:
            action.lease_until = now + action.lease_s

        def saved(outcome: Outcome[Any]) -> None:
            if not outcome.ok:
                # Without a persisted revert a crash could leave the value forever: do not write.
                self._applied(action, f"could not persist the revert: {outcome.error}")
                return
            self._write_checked(action, action.value, lambda error: self._applied(action, error))

        self._save(action, saved)

    def _applied(self, action: Action, error: str | None) -> None:
        with self._lock:
            if action.state != APPLYING:
                return
            if error is not None:
                self.counters["failed"] += 1
                self._report_failure(action, "apply", error)
                self._audit_update(action, result=f"failed: {error}")
                if action.extra.get("inherited") and action.revert_to is not None:
                    # It took the point over from a holder whose revert it carries: still undo that.
                    action.state = ACTIVE
                    action.result = f"failed: {error}"
                    self._begin_revert(action, "the new value failed", final=FAILED)
                else:
                    self._finish(action, FAILED, f"failed: {error}")
                self._settle(action)
                return
            self.counters["applied"] += 1
            self._value_taken(action, action.value)
            action.result = "ok"
            self._audit_update(action, result="ok")
            cancel_by = action.extra.get("cancel")
            if not action.holds:
                self._finish(action, DONE, "ok")
            else:
                action.state = ACTIVE
                self._set_hold_until(action)
                self._save(action)
                self._arm_revert(action)
                self._arm_lease(action)
                if cancel_by:
                    self._begin_revert(action, f"cancelled by {cancel_by}", final=CANCELLED)
            self._settle(action)

    # ---- reverting ------------------------------------------------------------------------

    def _begin_revert(self, action: Action, why: str, *, final: str = REVERTED) -> None:
        with self._lock:
            if action.state != ACTIVE:
                return
            self._cancel_timers(action)
            action.state = REVERTING
            action.extra["why"] = why
            action.extra["final"] = final
        self._save(action, lambda outcome: self._revert_write(action))

    def _revert_write(self, action: Action) -> None:
        if action.state != REVERTING:
            return
        value = action.revert_to
        if value is None:
            spec = self._spec_quiet(action)
            value = spec.default if spec is not None else None
        if value is None:
            self._reverted(action, None, "no revert value and the point is gone")
            return
        self._write_checked(action, value, lambda error: self._reverted(action, value, error))

    def _reverted(self, action: Action, value: float | None, error: str | None) -> None:
        why = action.extra.get("why", "revert")
        if error is not None:
            attempt = action.extra.get("revert_attempts", 0) + 1
            action.extra["revert_attempts"] = attempt
            if attempt == 1:
                self._report_failure(action, "revert", error)
                self._audit_update(action, revert=f"revert failed ({error}); retrying")
            delay = min(REVERT_RETRY_CAP, self.retry_gap * 2**attempt)
            self._task(lambda now: self._revert_write(action), "control.revert", delay=delay)
            return
        with self._lock:
            self.counters["reverted"] += 1
            if value is not None:
                self._value_taken(action, value)
            final = action.extra.get("final", REVERTED)
            note = f"reverted to {value:g} ({why})"
            self._finish(action, final, action.result if final == FAILED else note)
            self._audit_update(action, revert=note)
            audit = self._audit()
            if audit is not None:
                audit.record(
                    "control",
                    f"revert {action.point} on {action.device} to {value:g}",
                    "ok",
                    detail={**self._detail(action), "why": why},
                )

    # ---- schedules ------------------------------------------------------------------------

    def _resume_schedule(self, action: Action, now: float) -> None:
        due = action.next_run
        if due is not None and due < now - MISSED_GRACE:
            if action.repeat is None:
                self._finish(action, MISSED, "missed while the gateway was down")
                self._audit_update(action, result="missed while the gateway was down")
                return
            action.next_run = self._next_cron(action, now)
            self._save(action)
        self._arm_schedule(action)

    def _arm_schedule(self, action: Action) -> None:
        if action.state != SCHEDULED:
            return
        if action.next_run is None:
            self._finish(action, DONE, "no further runs")
            return
        self._task(
            lambda now: self._fire(action), "control.schedule", name=f"control.schedule.{action.id}", at=action.next_run
        )

    def _fire(self, schedule: Action) -> None:
        with self._lock:
            if schedule.state != SCHEDULED:
                return
            now = self._wall()
            schedule.runs += 1
            run = Action(
                id=f"{schedule.id}.{schedule.runs}",
                device=schedule.device,
                point=schedule.point,
                value=schedule.value,
                who=f"schedule:{schedule.id}",
                source="schedule",
                created=now,
                state=APPLYING,
                duration_s=schedule.duration_s,
                parent=schedule.id,
            )
            try:
                self._spec(run.device, run.point, run.value)
                self._claim(run)
            except (Conflict, Invalid) as exc:
                run.state, run.result = SKIPPED, f"skipped: {exc}"
                self._recent.append(run)
                self._audit_record(run, run.result, f"set {self._what(run)}")
                log.info("control: schedule %s run skipped: %s", schedule.id, exc)
            if schedule.repeat is not None:
                schedule.next_run = self._next_cron(schedule, now)
                self._save(schedule)
                self._arm_schedule(schedule)
            else:
                self._finish(schedule, DONE, f"ran as {run.id}")

    def _next_cron(self, action: Action, after: float) -> float | None:
        if action.repeat is None:
            return None
        return parse_cron(action.repeat).next_after(after, self.tz)

    # ---- read-back write -----------------------------------------------------------------

    def _write_checked(self, action: Action, value: float, done: Callable[[str | None], None]) -> None:
        """Write `value` to the action's point with read-back and retries (see writer.py)."""
        spec = self._spec_quiet(action)
        if spec is None:
            done("the device or its point is gone")
            return
        quirks = load_profile(self._devices().get(action.device).profile).quirks
        self.writer.write(action.device, spec, quirks, value, done)

    # ---- helpers --------------------------------------------------------------------------

    def _spec(self, device: str, point: str, value: float) -> WritableSpec:
        devices = self._devices()
        try:
            cfg = devices.get(device)
        except KeyError:
            raise Invalid(f"device: no device {device[:64]!r}") from None
        if not cfg.enabled:
            raise Invalid(f"device: {device!r} is disabled")
        try:
            profile = load_profile(cfg.profile)
        except ProfileError as exc:
            raise Invalid(f"device: {exc}") from None
        return check_value(profile, point, value)

    def _spec_quiet(self, action: Action) -> WritableSpec | None:
        try:
            cfg = self._devices().get(action.device)
            profile = load_profile(cfg.profile)
        except (KeyError, ProfileError, Invalid):
            return None
        return next((w for w in profile.writable if w.name == action.point), None)

    def _devices(self) -> Any:
        devices = self.services.get("devices")
        if devices is None:
            raise Invalid("the devices service is not running")
        return devices

    def _audit(self) -> Any:
        return self.services.get("audit")

    def _wall(self) -> float:
        return self.engine.clock.time()

    def _task(
        self,
        fn: Callable[[float], Any],
        kind: str,
        *,
        delay: float | None = None,
        at: float | None = None,
        name: str | None = None,
    ) -> None:
        if at is not None:
            delay = max(0.0, at - self._wall())
        task = Task(fn, kind=kind, cls=TaskClass.CONTROL, name=name, on_duplicate=Duplicate.REPLACE)
        try:
            self.engine.submit(task, delay=delay)
        except EngineStopped:
            log.debug("%s not scheduled: shutting down (it resumes from the store at the next start)", kind)

    def _arm_revert(self, action: Action) -> None:
        if action.revert_at is not None:
            self._task(
                lambda now: self._timer(action, "revert"),
                "control.revert",
                name=f"control.revert.{action.id}",
                at=action.revert_at,
            )

    def _arm_lease(self, action: Action) -> None:
        if action.lease_until is not None:
            self._task(
                lambda now: self._timer(action, "lease"),
                "control.lease",
                name=f"control.lease.{action.id}",
                at=action.lease_until,
            )

    def _timer(self, action: Action, which: str) -> None:
        with self._lock:
            if action.state != ACTIVE:
                return
            if which == "lease":
                if action.lease_until is not None and action.lease_until > self._wall() + 1e-6:
                    self._arm_lease(action)  # renewed meanwhile
                    return
                self._begin_revert(action, "lease expired: the backend went silent")
            else:
                self._begin_revert(action, f"timer of {action.duration_s:g} s ended")

    def _cancel_timers(self, action: Action) -> None:
        for kind in ("revert", "lease", "schedule"):
            self.engine.cancel(f"control.{kind}.{action.id}")

    def _set_hold_until(self, action: Action) -> None:
        key = (action.device, action.point)
        hold = self._holds.get(key)
        if hold is not None and hold.action_id == action.id:
            ends = [t for t in (action.revert_at, action.lease_until) if t is not None]
            self._holds[key] = Hold(action.id, action.who, action.source, min(ends) if ends else None)

    def _finish(self, action: Action, state: str, result: str, *, release: bool = True) -> None:
        with self._lock:
            action.state = state
            action.result = result
            self._actions.pop(action.id, None)
            self._recent.append(action)
            key = (action.device, action.point)
            hold = self._holds.get(key)
            if release and hold is not None and hold.action_id == action.id:
                del self._holds[key]
        self._save(action)

    def _save(self, action: Action, then: Callable[[Outcome[Any]], None] | None = None) -> None:
        action.updated = self._wall()
        snapshot = Action.from_dict(action.as_dict())  # later changes must not race the writer
        store = self.store
        if store is None:
            if then is not None:
                self._task(lambda now: then(Outcome(value=None)), "control.store")
            return

        def done(outcome: Outcome[Any]) -> None:
            if not outcome.ok:
                log.error("control: action %s not saved: %s", action.id, outcome.error)
            if then is not None:
                then(outcome)

        self.engine.offload(
            lambda: store.put(snapshot), done, kind="control.store", cls=TaskClass.CONTROL, lane=self._lane
        )

    def _settle(self, action: Action) -> None:
        for fn in self._waiters.pop(action.id, []):
            try:
                fn(action.as_dict())
            except Exception:  # a waiter that went away must not break the action
                log.exception("control: settle callback failed")

    def _report_failure(self, action: Action, phase: str, reason: str) -> None:
        log.warning("control: %s of %s on %s failed: %s", phase, action.point, action.device, reason)
        detail = {
            "action": action.id,
            "phase": phase,
            "point": action.point,
            "reason": reason,
            "value": action.value if phase == "apply" else action.revert_to,
            "who": action.who,
        }
        self.bus.emit(DeviceEvent("control_failed", self._wall(), action.device, detail))

    def _what(self, action: Action) -> str:
        text = f"{action.point}={action.value:g} on {action.device}"
        if action.duration_s is not None:
            text += f" for {action.duration_s:g} s"
        if action.lease_s is not None:
            text += f" (lease {action.lease_s:g} s)"
        if action.repeat is not None:
            text += f" repeating '{action.repeat}'"
        return text

    def _detail(self, action: Action) -> dict[str, Any]:
        keys = ("id", "device", "point", "value", "duration_s", "at", "repeat", "lease_s", "revert_to", "parent")
        data = action.as_dict()
        return {k: data[k] for k in keys if data[k] is not None}

    def _audit_record(self, action: Action, result: str, what: str) -> int | None:
        audit = self._audit()
        if audit is None:
            return None
        return audit.record(action.who, what, result, detail=self._detail(action)).id

    def _audit_update(self, action: Action, *, result: str | None = None, revert: str | None = None) -> None:
        audit = self._audit()
        if audit is not None and action.audit_id is not None:
            audit.update(action.audit_id, result=result, revert=revert)


def attach(gateway: Gateway) -> None:
    """Open the action store, resume open actions, register MQTT commands and (optionally) Home Assistant."""
    from .commands import register

    store = ActionStore(Path(gateway.data_dir) / "control.sqlite")
    service = ControlService(gateway.engine, gateway.bus, gateway.services, store)
    gateway.services["control"] = service
    gateway.engine.on_shutdown("control", service.close)
    service.start()
    register()
