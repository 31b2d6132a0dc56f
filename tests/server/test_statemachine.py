"""Table-driven tests of every gateway state transition, legal and illegal, and the state policies."""

from __future__ import annotations

import itertools

import pytest

from server.engine import TaskClass
from server.statemachine import POLICIES, TRANSITIONS, Event, IllegalTransition, State, policy_for, step

S, E = State, Event

EXPECTED = {
    (S.BOOTING, E.BOOTED_UNPROVISIONED): S.PROVISIONING,
    (S.BOOTING, E.BOOTED_PROVISIONED): S.OFFLINE,
    (S.BOOTING, E.SHUTDOWN): S.STOPPING,
    (S.PROVISIONING, E.WINDOW_OPENED): S.PROVISIONING,
    (S.PROVISIONING, E.WINDOW_CLOSED): S.OFFLINE,
    (S.PROVISIONING, E.UPLINK_UP): S.PROVISIONING,
    (S.PROVISIONING, E.UPLINK_DOWN): S.PROVISIONING,
    (S.PROVISIONING, E.FAULT): S.PROVISIONING,
    (S.PROVISIONING, E.FAULTS_CLEARED): S.PROVISIONING,
    (S.PROVISIONING, E.SHUTDOWN): S.STOPPING,
    (S.OFFLINE, E.UPLINK_UP): S.ONLINE,
    (S.OFFLINE, E.UPLINK_DOWN): S.OFFLINE,
    (S.OFFLINE, E.FAULT): S.OFFLINE,
    (S.OFFLINE, E.FAULTS_CLEARED): S.OFFLINE,
    (S.OFFLINE, E.WINDOW_OPENED): S.PROVISIONING,
    (S.OFFLINE, E.SHUTDOWN): S.STOPPING,
    (S.ONLINE, E.UPLINK_UP): S.ONLINE,
    (S.ONLINE, E.UPLINK_DOWN): S.OFFLINE,
    (S.ONLINE, E.FAULT): S.DEGRADED,
    (S.ONLINE, E.FAULTS_CLEARED): S.ONLINE,
    (S.ONLINE, E.WINDOW_OPENED): S.PROVISIONING,
    (S.ONLINE, E.SHUTDOWN): S.STOPPING,
    (S.DEGRADED, E.UPLINK_UP): S.DEGRADED,
    (S.DEGRADED, E.UPLINK_DOWN): S.OFFLINE,
    (S.DEGRADED, E.FAULT): S.DEGRADED,
    (S.DEGRADED, E.FAULTS_CLEARED): S.ONLINE,
    (S.DEGRADED, E.WINDOW_OPENED): S.PROVISIONING,
    (S.DEGRADED, E.SHUTDOWN): S.STOPPING,
}


@pytest.mark.parametrize(("state", "event", "after"), [(s, e, a) for (s, e), a in EXPECTED.items()])
def test_legal_transition(state: State, event: Event, after: State) -> None:
    assert step(state, event) is after


ILLEGAL = [pair for pair in itertools.product(State, Event) if pair not in EXPECTED]


@pytest.mark.parametrize(("state", "event"), ILLEGAL)
def test_illegal_event_is_a_clear_error_and_state_unchanged(state: State, event: Event) -> None:
    with pytest.raises(IllegalTransition) as info:
        step(state, event)
    message = str(info.value)
    assert f"'{event.value}'" in message and f"'{state.value}'" in message and "allowed:" in message
    assert info.value.state is state


def test_table_is_exactly_the_expected_one() -> None:
    assert TRANSITIONS == EXPECTED
    assert {s for s, _ in ILLEGAL} >= {S.STOPPING}  # nothing leaves STOPPING


def test_every_state_has_a_policy_covering_every_class() -> None:
    assert set(POLICIES) == set(State)
    for state in State:
        assert set(policy_for(state).priorities) == set(TaskClass)


@pytest.mark.parametrize("state", [s for s in State if s is not S.PROVISIONING])
def test_normal_priority_order(state: State) -> None:
    p = policy_for(state).priorities
    C = TaskClass
    assert p[C.CONTROL] < p[C.HARVEST] < p[C.UPLINK_LIVE] < p[C.BACKLOG] < p[C.HOUSEKEEPING]


def test_provisioning_lifts_ble_and_wifi_work() -> None:
    p = policy_for(S.PROVISIONING).priorities
    assert p[TaskClass.PROVISIONING] < min(v for c, v in p.items() if c is not TaskClass.PROVISIONING)
    assert p[TaskClass.CONTROL] < p[TaskClass.HARVEST]


def test_offline_holds_uplink_work_but_keeps_harvesting() -> None:
    paused = policy_for(S.OFFLINE).paused
    assert paused == {TaskClass.UPLINK_LIVE, TaskClass.BACKLOG}
    assert not policy_for(S.ONLINE).paused
