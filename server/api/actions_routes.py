"""Routes of the action history (the audit log): who did what, when, and how it ended."""

from __future__ import annotations

from typing import Any

from .routes import ApiContext, Route, query_args

ACTIONS_QUERY: dict[str, Any] = {"limit": {"type": "integer", "minimum": 1, "maximum": 1000}}


def actions_list(ctx: ApiContext) -> Any:
    """The newest actions first (default 20): API changes, backend commands, control actions and their reverts."""
    a = query_args(ACTIONS_QUERY)
    return {"actions": ctx.service("audit").recent(a.get("limit", 20))}


ROUTES: tuple[Route, ...] = (
    Route("GET", "/api/actions", "read", "Action history, newest first", actions_list, query=ACTIONS_QUERY),
)
