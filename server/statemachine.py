"""The gateway state machine as data: states, events, a transition table and a pure `step`.

Each state also sets the engine policy: the priority of every task class and the classes
held back. Control always outranks harvest, harvest outranks live uplink, live uplink
outranks backlog, housekeeping comes last; provisioning lifts BLE and Wi-Fi work to the top.
"""

from __future__ import annotations

from enum import Enum

from server.engine import Policy, TaskClass


class State(Enum):
    """What the gateway as a whole is doing."""

    BOOTING = "booting"
    PROVISIONING = "provisioning"
    OFFLINE = "offline"
    ONLINE = "online"
    DEGRADED = "degraded"
    STOPPING = "stopping"


class Event(Enum):
    """Things that happen to the gateway."""

    BOOTED_UNPROVISIONED = "booted_unprovisioned"  # no owner or network configured yet
    BOOTED_PROVISIONED = "booted_provisioned"
    WINDOW_OPENED = "window_opened"  # provisioning window: button, first boot, REST or CLI
    WINDOW_CLOSED = "window_closed"  # timed out, or provisioning finished
    UPLINK_UP = "uplink_up"
    UPLINK_DOWN = "uplink_down"
    FAULT = "fault"  # a device offline, outbox dropping, clock unsynced...
    FAULTS_CLEARED = "faults_cleared"
    SHUTDOWN = "shutdown"


class IllegalTransition(ValueError):
    """An event that has no meaning in the current state; the state is unchanged."""

    def __init__(self, state: State, event: Event) -> None:
        allowed = ", ".join(sorted(e.value for (s, e) in TRANSITIONS if s is state)) or "none"
        super().__init__(f"event '{event.value}' is not allowed in state '{state.value}' (allowed: {allowed})")
        self.state = state
        self.event = event


S, E = State, Event
_RUNNING = (S.OFFLINE, S.ONLINE, S.DEGRADED)

TRANSITIONS: dict[tuple[State, Event], State] = {
    (S.BOOTING, E.BOOTED_UNPROVISIONED): S.PROVISIONING,
    (S.BOOTING, E.BOOTED_PROVISIONED): S.OFFLINE,  # harvest starts at once; uplink follows
    # Uplink and fault news during provisioning do not end the window.
    (S.PROVISIONING, E.WINDOW_OPENED): S.PROVISIONING,
    (S.PROVISIONING, E.WINDOW_CLOSED): S.OFFLINE,
    (S.PROVISIONING, E.UPLINK_UP): S.PROVISIONING,
    (S.PROVISIONING, E.UPLINK_DOWN): S.PROVISIONING,
    (S.PROVISIONING, E.FAULT): S.PROVISIONING,
    (S.PROVISIONING, E.FAULTS_CLEARED): S.PROVISIONING,
    (S.OFFLINE, E.UPLINK_UP): S.ONLINE,
    (S.OFFLINE, E.UPLINK_DOWN): S.OFFLINE,
    (S.OFFLINE, E.FAULT): S.OFFLINE,
    (S.OFFLINE, E.FAULTS_CLEARED): S.OFFLINE,
    (S.ONLINE, E.UPLINK_UP): S.ONLINE,
    (S.ONLINE, E.UPLINK_DOWN): S.OFFLINE,
    (S.ONLINE, E.FAULT): S.DEGRADED,
    (S.ONLINE, E.FAULTS_CLEARED): S.ONLINE,
    (S.DEGRADED, E.UPLINK_UP): S.DEGRADED,
    (S.DEGRADED, E.UPLINK_DOWN): S.OFFLINE,
    (S.DEGRADED, E.FAULT): S.DEGRADED,
    (S.DEGRADED, E.FAULTS_CLEARED): S.ONLINE,
    **{(s, E.WINDOW_OPENED): S.PROVISIONING for s in _RUNNING},
    **{(s, E.SHUTDOWN): S.STOPPING for s in State if s is not S.STOPPING},
}


def step(state: State, event: Event) -> State:
    """The state after `event`; raises IllegalTransition (state unchanged) if it has no meaning."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise IllegalTransition(state, event) from None


C = TaskClass
_NORMAL = {C.CONTROL: 0, C.PROVISIONING: 1, C.HARVEST: 2, C.UPLINK_LIVE: 3, C.BACKLOG: 4, C.HOUSEKEEPING: 5}
_PROVISIONING = {**_NORMAL, C.PROVISIONING: 0, C.CONTROL: 1}

POLICIES: dict[State, Policy] = {
    S.BOOTING: Policy(_NORMAL),
    S.PROVISIONING: Policy(_PROVISIONING),
    # Offline: nothing to send, so drain and live publishing wait; harvest goes on into the outbox.
    S.OFFLINE: Policy(_NORMAL, paused=frozenset({C.UPLINK_LIVE, C.BACKLOG})),
    S.ONLINE: Policy(_NORMAL),
    S.DEGRADED: Policy(_NORMAL),
    # Stopping: only what persists or closes cleanly matters; no new harvest or housekeeping.
    S.STOPPING: Policy(_NORMAL, paused=frozenset({C.HARVEST, C.HOUSEKEEPING})),
}


def policy_for(state: State) -> Policy:
    """The engine policy (priorities, paused classes) a state sets."""
    return POLICIES[state]
