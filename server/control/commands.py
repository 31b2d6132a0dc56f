"""Backend commands `control.set`, `control.cancel`, `control.list`, `control.renew` (args as the REST body).

They run as CONTROL tasks with backend priority; `control.set` answers once the action settled
(applied, failed or scheduled), so the signed result on /cmd/result says how it ended.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from server.uplink.commands import DEFERRED, CommandFailed, CommandRequest, register_command

from .model import Conflict, Invalid

WHO = "backend"


def _service(req: CommandRequest) -> Any:
    svc = (getattr(req.gateway, "services", None) or {}).get("control")
    if svc is None:
        raise CommandFailed("control service is not running")
    return svc


def _action_id(req: CommandRequest, *, required: bool) -> str | None:
    allowed = {"id"}
    unknown = sorted(set(req.args) - allowed)
    if unknown:
        raise CommandFailed(f"unknown argument {unknown[0]!r} (expected: id)")
    value = req.args.get("id")
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value or len(value) > 64:
        raise CommandFailed("id: required (an action id from control.set or control.list)")
    return value


def control_set(req: CommandRequest) -> Any:
    """Start an action with backend priority; result {action: {...}} once it applied, failed or was scheduled."""
    svc = _service(req)

    def settled(action: dict[str, Any]) -> None:
        if action["state"] == "failed":
            req.fail(f"{action['result']} (action {action['id']})")
        else:
            req.reply({"action": action})

    try:
        svc.submit(req.args, WHO, "backend", on_settled=settled)
    except Invalid as exc:
        raise CommandFailed(str(exc)) from None
    except Conflict as exc:
        raise CommandFailed(f"conflict: {exc}") from None
    return DEFERRED


def control_cancel(req: CommandRequest) -> dict[str, Any]:
    """Cancel a schedule or end a held action early (it reverts)."""
    action_id = _action_id(req, required=True)
    try:
        action = _service(req).cancel(action_id, WHO, "backend")
    except KeyError:
        raise CommandFailed(f"unknown action {action_id!r}") from None
    except (Invalid, Conflict) as exc:
        raise CommandFailed(str(exc)) from None
    return {"action": action.as_dict()}


def control_list(req: CommandRequest) -> dict[str, Any]:
    """Open actions: {active: [...], scheduled: [...]}."""
    _action_id(req, required=False)
    return _service(req).listing()


def control_renew(req: CommandRequest) -> dict[str, Any]:
    """Renew the lease of every backend action (or of `id`); result {renewed: [ids], lease_until: {...}}."""
    action_id = _action_id(req, required=False)
    try:
        renewed = _service(req).renew(WHO, action_id)
    except KeyError:
        raise CommandFailed(f"no leased action {action_id!r} to renew") from None
    return {"renewed": [a.id for a in renewed], "lease_until": {a.id: a.lease_until for a in renewed}}


COMMANDS: dict[str, Callable[[CommandRequest], Any]] = {
    "control.set": control_set,
    "control.cancel": control_cancel,
    "control.list": control_list,
    "control.renew": control_renew,
}


def register() -> None:
    """Register the control commands with the uplink (idempotent)."""
    for name, handler in COMMANDS.items():
        register_command(name, handler, replace=True)
