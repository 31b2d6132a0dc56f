"""Routes of the system part: settings, owner, provisioning window, Wi-Fi, restart/reboot and the /doc page."""

from __future__ import annotations

from importlib import resources
from typing import Any

from flask import Response, request

from server.config import FIELDS
from server.settings import OwnerExists, SettingsError

from .routes import ApiContext, ApiError, Route, check_types, json_body, wait

SCHEMA_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean"}
WIFI_WAIT_EXTRA = 10.0  # s on top of wifi.connect_timeout before a handler gives up on NetworkManager


def _setting_schema(f: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": [SCHEMA_TYPES.get(f.type, "string"), "null"], "description": f.help}
    if f.choices:
        spec["enum"] = [*f.choices, None]
    if f.min is not None:
        spec["minimum"] = f.min
    if f.max is not None:
        spec["maximum"] = f.max
    return spec


SETTINGS_BODY: dict[str, Any] = {
    "type": "object",
    "description": "{key: value}; null forgets the stored value (the lower layers apply again); "
    "a secret sent back as *** stays unchanged",
    "properties": {f.key: _setting_schema(f) for f in FIELDS if f.key != "data_dir"},
    "minProperties": 1,
}
OWNER_BODY: dict[str, Any] = {
    "type": "object",
    "required": ["owner"],
    "properties": {
        "owner": {"type": "string", "minLength": 1, "maxLength": 128},
        "name": {"type": "string", "minLength": 1, "maxLength": 64},
        "force": {"type": "boolean"},
    },
    "additionalProperties": False,
}
WINDOW_BODY: dict[str, Any] = {
    "type": "object",
    "description": "optional: an empty body opens the window for provisioning.window_s",
    "properties": {"seconds": {"type": "number", "minimum": 1, "maximum": 900}},
    "additionalProperties": False,
}
CONNECT_BODY: dict[str, Any] = {
    "type": "object",
    "required": ["ssid"],
    "properties": {
        "ssid": {"type": "string", "minLength": 1, "maxLength": 32},
        "password": {"type": "string", "description": "WPA passphrase (8-63) or 64 hex; omit for an open network"},
        "hidden": {"type": "boolean", "description": "join a network that does not broadcast its name"},
    },
    "additionalProperties": False,
}


def _only(data: dict[str, Any], schema: dict[str, Any]) -> None:
    """422 for a field the schema does not name, or a required one missing."""
    extra = sorted(set(data) - set(schema["properties"]))
    if extra:
        raise ApiError(422, f"unknown field {extra[0][:64]!r} (expected: {', '.join(schema['properties'])})")
    for key in schema.get("required", []):
        if key not in data:
            raise ApiError(422, f"{key}: required")


def _finish(outcome: Any) -> Any:
    """The value of a service outcome, or the 4xx/5xx its error stands for."""
    from server.wifi import WifiNotFound, WifiRefused, WifiUnavailable

    from .system_power import PowerUnavailable

    if outcome.ok:
        return outcome.value
    exc = outcome.error
    if isinstance(exc, OwnerExists):
        raise ApiError(409, f"an owner is set already ({exc}); send force: true to replace it")
    if isinstance(exc, SettingsError | WifiRefused):
        raise ApiError(422, str(exc))
    if isinstance(exc, WifiNotFound):
        raise ApiError(404, str(exc))
    if isinstance(exc, WifiUnavailable | PowerUnavailable):
        raise ApiError(503, str(exc))
    if isinstance(exc, OSError):
        raise ApiError(503, f"could not save: {exc.strerror or exc}")
    raise ApiError(502, f"the system call failed: {type(exc).__name__}")


# ---- settings and owner -------------------------------------------------------------------


def settings_get(ctx: ApiContext) -> Any:
    """Every setting: value, default, type, help, source, when it applies; secrets shown as ***."""
    return ctx.service("system").describe()


def settings_patch(ctx: ApiContext) -> Any:
    """Validate and store settings; live keys apply at once, the rest are listed in restart_required."""
    data = json_body()
    try:
        parsed = ctx.service("settings").validate(data)
    except SettingsError as exc:
        raise ApiError(422, str(exc)) from None
    if not parsed:
        return {"changed": [], "applied": [], "overridden": [], "restart_required": []}
    system = ctx.service("system")
    return _finish(wait(lambda then: system.change(parsed, then), ctx.io_timeout))


def owner_get(ctx: ApiContext) -> Any:
    """The owner record, or nulls before initialisation."""
    owner = ctx.service("settings").owner()
    return owner or {"owner": None, "name": None, "initialized_at": None}


def owner_initialize(ctx: ApiContext) -> Any:
    """Set the owner once (409 if set, unless force); an optional name becomes the gateway's name."""
    data = json_body()
    check_types(data, OWNER_BODY)
    _only(data, OWNER_BODY)
    system = ctx.service("system")
    force = bool(data.get("force", False))
    outcome = wait(lambda then: system.set_owner(data["owner"], data.get("name"), force, then), ctx.io_timeout)
    return _finish(outcome)


# ---- provisioning -------------------------------------------------------------------------


def provisioning_get(ctx: ApiContext) -> Any:
    """Whether the provisioning window is open, for how long, and whether the gateway is provisioned."""
    return ctx.service("provisioning").status()


def provisioning_open(ctx: ApiContext) -> Any:
    """Open (or extend) the provisioning window; default provisioning.window_s (5 min)."""
    data = json_body() if request.get_data(cache=True).strip() else {}
    check_types(data, WINDOW_BODY)
    _only(data, WINDOW_BODY)
    seconds = data.get("seconds")
    if seconds is not None and not 1 <= seconds <= 900:
        raise ApiError(422, "seconds: must be 1-900")
    return ctx.service("provisioning").open(seconds)


def provisioning_close(ctx: ApiContext) -> Any:
    """Close the provisioning window now."""
    return ctx.service("provisioning").close()


# ---- Wi-Fi --------------------------------------------------------------------------------


def _wifi_wait(ctx: ApiContext) -> float:
    return max(ctx.io_timeout, float(ctx.gateway.config.get("wifi.connect_timeout", 30.0)) + WIFI_WAIT_EXTRA)


def wifi_status(ctx: ApiContext) -> Any:
    """Wi-Fi state: overall state, device, SSID, signal, IPv4 address."""
    wifi = ctx.service("wifi")
    return _finish(wait(wifi.status, _wifi_wait(ctx)))


def wifi_scan(ctx: ApiContext) -> Any:
    """Scan and list networks in range (ssid, signal %, security), strongest first."""
    wifi = ctx.service("wifi")
    return {"networks": _finish(wait(wifi.scan, _wifi_wait(ctx)))}


def wifi_connect(ctx: ApiContext) -> Any:
    """Join a network; answers the new status once connected. The password is never logged or returned."""
    from server.wifi import WifiRefused, check_password, check_ssid

    data = json_body()
    check_types(data, CONNECT_BODY)
    _only(data, CONNECT_BODY)
    try:
        ssid, password = check_ssid(data["ssid"]), check_password(data.get("password", ""))
    except WifiRefused as exc:
        raise ApiError(422, str(exc)) from None
    wifi = ctx.service("wifi")
    hidden = bool(data.get("hidden", False))
    return _finish(wait(lambda then: wifi.connect(ssid, password, hidden, then), _wifi_wait(ctx)))


def wifi_forget(ctx: ApiContext, ssid: str) -> Any:
    """Forget the saved connections of an SSID (404 if there is none)."""
    from server.wifi import WifiRefused, check_ssid

    try:
        check_ssid(ssid)
    except WifiRefused as exc:
        raise ApiError(422, str(exc)) from None
    wifi = ctx.service("wifi")
    return {"forgotten": ssid, "connections": _finish(wait(lambda then: wifi.forget(ssid, then), _wifi_wait(ctx)))}


# ---- power --------------------------------------------------------------------------------


def system_restart(ctx: ApiContext) -> Any:
    """Stop the gateway cleanly and exit with code 75, which the container/systemd restart policy restarts."""
    from .system_power import RESTART_EXIT_CODE

    ctx.service("system").restart()
    return {"restarting": True, "exit_code": RESTART_EXIT_CODE}


def system_reboot(ctx: ApiContext) -> Any:
    """Ask logind (org.freedesktop.login1.Manager.Reboot) to reboot the machine; 503 where there is none."""
    system = ctx.service("system")
    _finish(wait(system.reboot, ctx.io_timeout))
    return {"rebooting": True}


# ---- the docs page ------------------------------------------------------------------------


def doc_page(ctx: ApiContext) -> Any:
    """A self-contained HTML page rendering /api/openapi.json (no build step, no CDN)."""
    html = resources.files("server.api").joinpath("static/doc.html").read_text(encoding="utf-8")
    resp = Response(html, mimetype="text/html")
    # The page loads nothing from elsewhere; say so to the browser too.
    resp.headers["Content-Security-Policy"] = (
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'"
    )
    return resp


ROUTES: tuple[Route, ...] = (
    Route("GET", "/api/settings", "read", "Every setting with value, default, type and help", settings_get),
    Route("PATCH", "/api/settings", "admin", "Change settings (validated, stored)", settings_patch, SETTINGS_BODY),
    Route("GET", "/api/owner", "read", "The gateway's owner", owner_get),
    Route("POST", "/api/owner/initialize", "admin", "Set the owner (once)", owner_initialize, OWNER_BODY),
    Route("GET", "/api/provisioning", "read", "Provisioning window and provisioned state", provisioning_get),
    Route("POST", "/api/provisioning/window", "admin", "Open the provisioning window", provisioning_open, WINDOW_BODY),
    Route("DELETE", "/api/provisioning/window", "admin", "Close the provisioning window", provisioning_close),
    Route("GET", "/api/wifi", "read", "Wi-Fi status (state, SSID, signal, IP)", wifi_status),
    Route("POST", "/api/wifi/scan", "admin", "Scan for Wi-Fi networks", wifi_scan),
    Route("POST", "/api/wifi/connect", "admin", "Join a Wi-Fi network", wifi_connect, CONNECT_BODY),
    Route("DELETE", "/api/wifi/<ssid>", "admin", "Forget a saved Wi-Fi network", wifi_forget),
    Route("POST", "/api/system/restart", "admin", "Restart the gateway (exit code 75)", system_restart, status=202),
    Route("POST", "/api/system/reboot", "admin", "Reboot the machine through logind", system_reboot, status=202),
    Route("GET", "/doc", "public", "This API as a readable page", doc_page),
)
