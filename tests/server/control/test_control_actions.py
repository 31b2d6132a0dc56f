"""Control actions against the simulated SMA inverter: now, timed revert, conflicts, refusals, read-back."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from modbus_slave.faults import Fault
from modbus_slave.server import Simulator
from server.control.model import Conflict, Invalid

from .conftest import Rig, limit_w

pytestmark = pytest.mark.integration
POINT = "control.power_limit_w"


def test_now_action_writes_reads_back_and_is_audited(rig: Rig, sim: Simulator) -> None:
    action = rig.control.submit({"device": "inv", "point": POINT, "value": 3000}, "admin@127.0.0.1", "local")
    done = rig.settled(action.id, "done", "failed")
    assert (done.state, done.result) == ("done", "ok")
    assert limit_w(sim) == 3000
    assert rig.control.holder("inv", POINT) is None  # a one-shot write holds nothing afterwards
    entry = rig.audit.recent(5)[0]
    assert (entry["who"], entry["result"]) == ("admin@127.0.0.1", "ok")
    assert entry["detail"]["point"] == POINT and entry["detail"]["value"] == 3000


def test_timed_action_holds_then_reverts_to_the_value_read_before(rig: Rig, sim: Simulator) -> None:
    rig.write_raw(40915, 7000)  # the owner's own limit before the action
    action = rig.control.submit({"device": "inv", "point": POINT, "value": 2500, "duration_s": 600}, "a", "local")
    active = rig.settled(action.id, "active", "failed")
    assert active.revert_to == 7000 and active.revert_from == "read" and limit_w(sim) == 2500
    hold = rig.control.holder("inv", POINT)
    assert hold.action_id == action.id and hold.until == pytest.approx(active.revert_at)
    rig.advance(599)
    assert rig.state(action.id) == "active" and limit_w(sim) == 2500
    rig.advance(1)
    reverted = rig.settled(action.id, "reverted")
    assert limit_w(sim) == 7000 and "timer of 600 s ended" in reverted.result
    assert rig.control.holder("inv", POINT) is None
    history = rig.audit.recent(5)
    assert any(e["what"].startswith("revert control.power_limit_w on inv to 7000") for e in history)
    original = next(e for e in history if e["who"] == "a")
    assert original["result"] == "ok" and original["revert"].startswith("reverted to 7000")


def test_conflicts_name_the_holder_and_priorities_preempt(rig: Rig, sim: Simulator) -> None:
    backend = rig.control.submit(
        {"device": "inv", "point": POINT, "value": 4000, "duration_s": 60}, "backend", "backend"
    )
    rig.settled(backend.id, "active")
    with pytest.raises(Conflict, match=r"held by backend \(backend priority, action a"):
        rig.control.submit({"device": "inv", "point": POINT, "value": 1000}, "schedule:x", "schedule")
    # The owner outranks the backend: takes over, and inherits the revert to the value from before both.
    local = rig.control.submit({"device": "inv", "point": POINT, "value": 1500, "duration_s": 30}, "admin", "local")
    assert rig.control.get(backend.id).state == "preempted"
    taken = rig.settled(local.id, "active")
    assert taken.revert_to == 100000 and limit_w(sim) == 1500
    with pytest.raises(Conflict, match="held by admin"):
        rig.control.submit({"device": "inv", "point": POINT, "value": 900}, "backend", "backend")
    rig.advance(30)
    rig.settled(local.id, "reverted")
    assert limit_w(sim) == 100000
    assert rig.control.stats()["conflicts"] == 2


def test_invalid_requests_are_refused_with_reasons(rig: Rig) -> None:
    cases = [
        ({"device": "inv", "point": POINT, "value": 100001}, "outside control.power_limit_w's range [0, 100000] W"),
        ({"device": "inv", "point": "pv.power_w", "value": 1}, "'pv.power_w' is read-only on sma"),
        ({"device": "inv", "point": "x.nope", "value": 1}, "does not exist on sma (writable: control.power_limit_w)"),
        ({"device": "nope", "point": POINT, "value": 1}, "no device 'nope'"),
        ({"device": "inv", "point": POINT, "value": True}, "value: must be a number"),
        ({"device": "inv", "point": POINT, "value": 1, "duration_s": 0}, "duration_s: must be"),
        ({"device": "inv", "point": POINT, "value": 1, "repeat": "61 * * * *"}, "repeat: minute"),
        ({"device": "inv", "point": POINT, "value": 1, "at": "yesterday"}, "not an ISO-8601 time"),
        ({"device": "inv", "point": POINT, "value": 1, "at": 1}, "at: lies in the past"),
        ({"device": "inv", "point": POINT, "value": 1, "colour": "red"}, "unknown field 'colour'"),
    ]
    for body, reason in cases:
        with pytest.raises(Invalid) as exc:
            rig.control.submit(body, "admin", "local")
        assert reason in str(exc.value), body
    assert rig.control.listing() == {"active": [], "scheduled": []}


def test_a_write_refused_by_the_device_is_reported(rig: Rig, sim: Simulator) -> None:
    sim.set_fault(Fault("exception", 4))
    action = rig.control.submit({"device": "inv", "point": POINT, "value": 3000, "duration_s": 60}, "admin", "local")
    failed = rig.settled(action.id, "failed")
    assert "device refused" in failed.result
    events = [e for e in rig.events if e.kind == "control_failed"]
    assert len(events) == 1 and events[0].device_id == "inv"
    assert events[0].detail["action"] == action.id and events[0].detail["phase"] == "apply"
    assert rig.control.holder("inv", POINT) is None
    entry = next(e for e in rig.audit.recent(5) if e["who"] == "admin")
    assert entry["result"].startswith("failed: device refused")
    assert sim.requests >= 3  # the write was tried 1 + write_retries times


class IgnoringSim(Simulator):
    """A device that acknowledges writes but keeps its old value (a real failure mode of some inverters)."""

    def _write(self, address: int, values: list[int]):  # type: ignore[no-untyped-def]
        return None


def test_read_back_mismatch_fails_after_retries(tmp_path: Path) -> None:
    from tests.support import NOON

    from .conftest import _rig

    sim = IgnoringSim("sma", clock=lambda: NOON).start()
    try:
        gen = _rig(tmp_path, sim, fake=True)
        rig = next(gen)
        try:
            action = rig.control.submit({"device": "inv", "point": POINT, "value": 3000}, "admin", "local")
            failed = rig.settled(action.id, "failed")
            assert "read-back mismatch: wrote 3000, device reports 100000" in failed.result
            assert [e.detail["reason"] for e in rig.events if e.kind == "control_failed"] == [failed.result[8:]]
        finally:
            gen.close()
    finally:
        sim.stop()


def test_timed_action_reverts_in_real_time(live_rig: Rig, sim: Simulator) -> None:
    started = time.monotonic()
    action = live_rig.control.submit({"device": "inv", "point": POINT, "value": 4200, "duration_s": 1}, "a", "local")
    live_rig.settled(action.id, "active")
    assert limit_w(sim) == 4200
    live_rig.settled(action.id, "reverted")
    assert limit_w(sim) == 100000 and time.monotonic() - started >= 1.0


def test_no_write_without_a_persisted_revert(rig: Rig, sim: Simulator) -> None:
    rig.control.store.close()  # the store is gone (disk full, damaged): a timed action must not touch the device
    action = rig.control.submit({"device": "inv", "point": POINT, "value": 3000, "duration_s": 60}, "a", "local")
    failed = rig.settled(action.id, "failed")
    assert "could not persist the revert" in failed.result
    assert limit_w(sim) == 100000 and sim.written == {}
