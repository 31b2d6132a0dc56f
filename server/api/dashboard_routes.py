"""Routes of the dashboard: the page at `/`, its static files, where the live WebSocket is, the power history."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from flask import Response, g, request, send_from_directory

from .errors import ApiError
from .history import INTERVAL, SIZE
from .live import WS_PATH
from .routes import ApiContext, Route, query_args

STATIC = Path(__file__).with_name("static")
PAGE = "dashboard.html"
HISTORY_QUERY: dict[str, Any] = {
    "device": {"type": "string", "description": "one device id (default: every device with a history)"},
    "minutes": {"type": "integer", "minimum": 1, "maximum": int(SIZE * INTERVAL // 60)},
}
_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:\d+)?$")


def _ws_port(ctx: ApiContext) -> int | None:
    live = (ctx.gateway.services or {}).get("live")
    return None if live is None else int(live.port)


def csp(ws_port: int | None) -> str:
    """Content-Security-Policy for the page: scripts, styles and connections only from this gateway."""
    connect = "'self'"
    match = _HOST.match(request.host)
    if ws_port is not None and match:
        # 'self' does not cover another port: name the WebSocket's origin exactly.
        connect += f" ws://{match.group(1)}:{ws_port}"
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"connect-src {connect}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


def _static(ctx: ApiContext, name: str) -> Response:
    resp = send_from_directory(STATIC, name, max_age=0)
    resp.headers["Content-Security-Policy"] = csp(_ws_port(ctx))
    resp.headers["Referrer-Policy"] = "no-referrer"
    return resp


def page(ctx: ApiContext) -> Any:
    """The dashboard page (public; it asks for a token and keeps it in the browser)."""
    return _static(ctx, PAGE)


def script(ctx: ApiContext) -> Any:
    """The dashboard's script."""
    return _static(ctx, "dashboard.js")


def style(ctx: ApiContext) -> Any:
    """The dashboard's style sheet."""
    return _static(ctx, "dashboard.css")


def dashboard(ctx: ApiContext) -> Any:
    """Where the live WebSocket listens (ws_port null: live updates are off) and the history cadence."""
    # The token's role tells the page whether its control buttons can work or need the admin token.
    return {"ws_port": _ws_port(ctx), "ws_path": WS_PATH, "history_interval_s": INTERVAL, "role": g.get("role")}


def history(ctx: ApiContext) -> Any:
    """Power points (W) per device, sampled every 10 s, for the last `minutes` (default 60), oldest first."""
    a = query_args(HISTORY_QUERY)
    hist = ctx.service("history")
    minutes = a.get("minutes", HISTORY_QUERY["minutes"]["maximum"])
    now = ctx.gateway.engine.clock.time()
    wanted = [a["device"]] if "device" in a else hist.devices()
    out: dict[str, Any] = {}
    for device_id in wanted:
        got = hist.get(device_id, minutes, now)
        if got is None:
            configured = (ctx.gateway.services or {}).get("devices")
            try:
                if configured is None:
                    raise KeyError(device_id)
                configured.get(device_id)
            except KeyError:
                raise ApiError(404, f"no device {device_id[:64]!r}") from None
            got = {"t": [], "series": {}, "units": {}}  # configured, no power reading yet
        out[device_id] = got
    return {"interval_s": INTERVAL, "minutes": minutes, "devices": out}


ROUTES: tuple[Route, ...] = (
    Route("GET", "/", "public", "The dashboard page", page),
    # One route per file (no path parameter): nothing else in static/ can be fetched through these.
    Route("GET", "/ui/dashboard.js", "public", "The dashboard's script", script),
    Route("GET", "/ui/dashboard.css", "public", "The dashboard's style sheet", style),
    Route("GET", "/api/dashboard", "read", "Where the dashboard's live WebSocket listens", dashboard),
    Route(
        "GET",
        "/api/history",
        "read",
        "Power history per device (last hour, 10 s samples)",
        history,
        query=HISTORY_QUERY,
    ),
)
