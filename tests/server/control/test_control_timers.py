"""Leases, schedules, cancel and restart on a fake clock (the simulator does real Modbus underneath)."""

from __future__ import annotations

from pathlib import Path

import pytest

from modbus_slave.server import Simulator
from server.control.model import Conflict, Invalid
from server.engine import FakeClock

from .conftest import Rig, add_device, limit_w, make_gateway

pytestmark = pytest.mark.integration
POINT = "control.power_limit_w"


def test_lease_watchdog_reverts_when_the_backend_goes_silent(rig: Rig, sim: Simulator) -> None:
    action = rig.control.submit({"device": "inv", "point": POINT, "value": 5000, "lease_s": 30}, "backend", "backend")
    rig.settled(action.id, "active")
    for _ in range(3):  # renewals keep it alive well past one lease
        rig.advance(20)
        assert [a.id for a in rig.control.renew("backend")] == [action.id]
    assert rig.state(action.id) == "active" and limit_w(sim) == 5000
    rig.advance(29)
    assert rig.state(action.id) == "active"
    rig.advance(2)
    reverted = rig.settled(action.id, "reverted")
    assert "lease expired" in reverted.result and limit_w(sim) == 100000
    with pytest.raises(KeyError):
        rig.control.renew("backend", action.id)


def test_schedule_once_and_repeating(rig: Rig, sim: Simulator) -> None:
    now = rig.gateway.engine.clock.time()
    once = rig.control.submit(
        {"device": "inv", "point": POINT, "value": 2000, "at": now + 120, "duration_s": 60}, "admin", "local"
    )
    rig.pump(lambda: rig.control.listing()["scheduled"])
    assert rig.control.listing()["scheduled"][0]["next_run"] == pytest.approx(now + 120)
    rig.advance(119)
    assert limit_w(sim) == 100000
    rig.advance(1)
    run = rig.settled(f"{once.id}.1", "active")
    assert run.who == f"schedule:{once.id}" and run.source == "schedule" and limit_w(sim) == 2000
    assert rig.state(once.id) == "done"
    # Another schedule has the same (lowest) priority: it cannot take the point from this run.
    with pytest.raises(Conflict, match=f"held by schedule:{once.id}"):
        rig.control.submit({"device": "inv", "point": POINT, "value": 1}, "schedule:other", "schedule")
    rig.advance(60)
    rig.settled(run.id, "reverted")
    assert limit_w(sim) == 100000

    every = rig.control.submit({"device": "inv", "point": POINT, "value": 3000, "repeat": "*/5 * * * *"}, "a", "local")
    rig.pump(lambda: rig.state(every.id) == "scheduled")
    rig.advance(10 * 60)
    rig.pump(lambda: rig.control.get(every.id).runs == 2 and rig.state(f"{every.id}.2") == "done")
    assert limit_w(sim) == 3000
    cancelled = rig.control.cancel(every.id, "admin", "local")
    assert cancelled.state == "cancelled"
    assert rig.control.listing() == {"active": [], "scheduled": []}
    with pytest.raises(Invalid, match="already finished"):
        rig.control.cancel(every.id, "admin", "local")


def test_cancel_reverts_a_held_point_and_respects_priority(rig: Rig, sim: Simulator) -> None:
    action = rig.control.submit({"device": "inv", "point": POINT, "value": 800, "duration_s": 3600}, "admin", "local")
    rig.settled(action.id, "active")
    with pytest.raises(Conflict, match="belongs to admin"):
        rig.control.cancel(action.id, "backend", "backend")
    rig.control.cancel(action.id, "admin", "local")
    done = rig.settled(action.id, "cancelled")
    assert "cancelled by admin" in done.result and limit_w(sim) == 100000
    with pytest.raises(KeyError):
        rig.control.cancel("nope", "admin", "local")


def test_restart_resumes_holds_and_runs_overdue_reverts_at_once(tmp_path: Path, sim: Simulator) -> None:
    clock = FakeClock()
    data = tmp_path / "gw"
    first = Rig(make_gateway(data, clock), fake=True)
    first.gateway.start()
    add_device(first.gateway, sim)
    held = first.control.submit({"device": "inv", "point": POINT, "value": 1200, "duration_s": 100}, "a", "local")
    later = first.control.submit({"device": "inv", "point": POINT, "value": 1, "at": clock.time() + 500}, "a", "local")
    first.settled(held.id, "active")
    first.pump(lambda: first.control.store.get(later.id) is not None)
    first.gateway.engine.start_thread()
    first.gateway.stop()  # a clean stop; the kill -9 case runs in test_control_restart.py
    first.gateway.engine.wait_stopped(5)
    assert limit_w(sim) == 1200

    clock.advance(200)  # down past the revert time
    second = Rig(make_gateway(data, clock), fake=True)
    try:
        second.gateway.start()  # the device list is persisted too: devices are back before control resumes
        assert second.control.holder("inv", POINT).action_id == held.id
        second.settled(held.id, "reverted")
        assert limit_w(sim) == 100000
        assert second.state(later.id) == "scheduled"
        second.advance(300)
        second.settled(f"{later.id}.1", "done")
        assert limit_w(sim) == 1
    finally:
        second.gateway.engine.start_thread()
        second.gateway.stop()
        second.gateway.engine.wait_stopped(5)


def test_restart_after_a_crash_between_persisting_and_writing(tmp_path: Path, sim: Simulator) -> None:
    """The revert was committed, the write never confirmed (kill -9 in between): it is still reverted on time."""
    from server.control.model import Action
    from server.control.store import ActionStore

    clock = FakeClock()
    data = tmp_path / "gw"
    first = Rig(make_gateway(data, clock), fake=True)
    first.gateway.start()
    add_device(first.gateway, sim)
    first.pump(lambda: (data / "devices.sqlite").exists())
    first.gateway.engine.start_thread()
    first.gateway.stop()
    first.gateway.engine.wait_stopped(5)
    now = clock.time()
    store = ActionStore(data / "control.sqlite")
    common = {"device": "inv", "point": POINT, "who": "backend", "source": "backend", "created": now}
    store.put(
        Action(id="timed", value=10, state="applying", duration_s=60, revert_to=100000, revert_at=now + 60, **common)
    )
    store.put(Action(id="oneshot", value=20, state="applying", **common))
    store.close()

    second = Rig(make_gateway(data, clock), fake=True)
    try:
        second.gateway.start()
        assert second.state("timed") == "active" and second.control.holder("inv", POINT).action_id == "timed"
        assert "interrupted by a restart" in second.control.get("oneshot").result
        second.write_raw(40915, 10)  # the write had reached the device before the crash
        second.advance(60)
        second.settled("timed", "reverted")
        assert limit_w(sim) == 100000
    finally:
        second.gateway.engine.start_thread()
        second.gateway.stop()
        second.gateway.engine.wait_stopped(5)


def test_a_point_being_reverted_takes_no_new_value(rig: Rig, sim: Simulator) -> None:
    from modbus_slave.faults import Fault

    action = rig.control.submit({"device": "inv", "point": POINT, "value": 700, "duration_s": 10}, "a", "local")
    rig.settled(action.id, "active")
    sim.set_fault(Fault("exception", 6))  # busy: the revert keeps failing and retrying
    rig.advance(10)
    rig.pump(lambda: rig.state(action.id) == "reverting" and rig.control.get(action.id).extra.get("revert_attempts"))
    with pytest.raises(Conflict, match="being reverted right now"):
        rig.control.submit({"device": "inv", "point": POINT, "value": 1}, "a", "local")
    assert [e.detail["phase"] for e in rig.events if e.kind == "control_failed"] == ["revert"]  # reported once
    sim.set_fault(None)
    rig.settled(action.id, "reverted")
    assert limit_w(sim) == 100000
    assert rig.control.renew("a") == []  # nothing leased


def test_a_schedule_run_on_a_held_point_is_skipped_and_the_schedule_goes_on(rig: Rig, sim: Simulator) -> None:
    held = rig.control.submit({"device": "inv", "point": POINT, "value": 500, "duration_s": 3600}, "admin", "local")
    rig.settled(held.id, "active")
    every = rig.control.submit(
        {"device": "inv", "point": POINT, "value": 9000, "repeat": "* * * * *"}, "admin", "local"
    )
    rig.advance(61)
    run = rig.pump(lambda: rig.control.get(f"{every.id}.1"))
    assert run.state == "skipped" and f"held by admin (local priority, action {held.id})" in run.result
    assert limit_w(sim) == 500 and rig.state(every.id) == "scheduled"
    assert any(e["result"].startswith("skipped: held by admin") for e in rig.audit.recent(10))
    rig.control.cancel(held.id, "admin", "local")
    rig.settled(held.id, "cancelled")
    rig.advance(60)
    rig.settled(f"{every.id}.2", "done")
    assert limit_w(sim) == 9000
