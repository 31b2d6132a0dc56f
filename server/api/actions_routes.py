"""Routes of actions: the history (audit log), control actions (start, list, cancel) and writable points."""

from __future__ import annotations

import threading
import time
from typing import Any

from flask import g, request

from .errors import ApiError
from .routes import ApiContext, Route, check_types, json_body, query_args

ACTIONS_QUERY: dict[str, Any] = {"limit": {"type": "integer", "minimum": 1, "maximum": 1000}}
ACTION_BODY: dict[str, Any] = {
    "type": "object",
    "required": ["device", "point", "value"],
    "properties": {
        "device": {"type": "string", "description": "device id"},
        "point": {"type": "string", "description": "a writable point of the device's profile"},
        "value": {"type": "number", "description": "in the point's unit, within min/max, on the step"},
        "duration_s": {"type": "number", "minimum": 1, "description": "hold for N seconds, then revert"},
        "at": {"description": "run at this time: ISO-8601 string or epoch seconds"},
        "repeat": {"type": "string", "description": "5-field cron (minute hour day month weekday), local time"},
        "lease_s": {"type": "number", "minimum": 5, "description": "revert unless renewed within this"},
    },
    "additionalProperties": False,
}


def _control(ctx: ApiContext) -> Any:
    return ctx.service("control")


def _who() -> str:
    return f"{g.get('role', 'admin')}@{request.remote_addr or '?'}"


def actions_list(ctx: ApiContext) -> Any:
    """History newest first (default 20; API changes, commands, control actions, reverts), plus open actions."""
    a = query_args(ACTIONS_QUERY)
    out: dict[str, Any] = {"actions": ctx.service("audit").recent(a.get("limit", 20))}
    control = (getattr(ctx.gateway, "services", None) or {}).get("control")
    listing = control.listing() if control is not None else {"active": [], "scheduled": []}
    out.update(listing)
    return out


def action_create(ctx: ApiContext) -> Any:
    """Start an action as the local admin (highest priority): now, for duration_s, at a time, or repeating."""
    from server.control.model import Conflict, Invalid, parse_request

    data = json_body()
    check_types(data, ACTION_BODY)
    try:
        parse_request(data, time.time())  # the shape first: a bad body is a 422 whatever runs
    except Invalid as exc:
        raise ApiError(422, str(exc)) from None
    control = _control(ctx)
    settled = threading.Event()
    box: list[dict[str, Any]] = []

    def on_settled(action: dict[str, Any]) -> None:
        box.append(action)
        settled.set()

    try:
        action = control.submit(data, _who(), "local", on_settled=on_settled)
    except Invalid as exc:
        raise ApiError(422, str(exc)) from None
    except Conflict as exc:
        raise ApiError(409, str(exc)) from None
    # Answer with how it ended when that is quick (applied, failed, scheduled); else as it stands.
    settled.wait(ctx.io_timeout)
    return {"action": box[0] if box else action.as_dict()}


def action_cancel(ctx: ApiContext, action_id: str) -> Any:
    """Cancel a schedule, or end a held action now (its point reverts)."""
    from server.control.model import Conflict, Invalid

    control = _control(ctx)
    try:
        action = control.cancel(action_id[:64], _who(), "local")
    except KeyError:
        raise ApiError(404, f"no open action {action_id[:64]!r}") from None
    except (Invalid, Conflict) as exc:
        raise ApiError(409, str(exc)) from None
    return {"action": action.as_dict()}


def action_get(ctx: ApiContext, action_id: str) -> Any:
    """One open or recently finished action."""
    action = _control(ctx).get(action_id[:64])
    if action is None:
        raise ApiError(404, f"no action {action_id[:64]!r}")
    return {"action": action.as_dict()}


def control_points(ctx: ApiContext) -> Any:
    """Every writable point of every enabled device: unit, min, max, step, safe default and who holds it."""
    return {"points": _control(ctx).points()}


ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/api/actions",
        "read",
        "Action history, newest first, with active and scheduled actions",
        actions_list,
        query=ACTIONS_QUERY,
    ),
    Route(
        "POST",
        "/api/actions",
        "admin",
        "Start a control action (now, timed, at a time or repeating)",
        action_create,
        body=ACTION_BODY,
        status=201,
    ),
    Route("GET", "/api/actions/<action_id>", "read", "One control action", action_get),
    Route("DELETE", "/api/actions/<action_id>", "admin", "Cancel an action (a held point reverts)", action_cancel),
    Route("GET", "/api/control/points", "read", "Writable points with limits and their holder", control_points),
)
