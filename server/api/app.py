"""The Flask app: routes from the table, bearer auth with a failure limiter, JSON errors, closed CORS."""

from __future__ import annotations

import math
from typing import Any

from flask import Flask, Response, g, jsonify, request

from .errors import ApiError, error_response, install
from .limiter import FailureLimiter
from .routes import ApiContext, Route, all_routes
from .tokens import Tokens

MAX_BODY = 64 * 1024  # bytes; device definitions and Modbus requests are tiny


def create_app(
    gateway: Any, tokens: Tokens, *, limiter: FailureLimiter | None = None, context: ApiContext | None = None
) -> Flask:
    """A Flask app serving the route table for `gateway`, checking tokens against `tokens`."""
    app = Flask("ohm.api", static_folder=None)  # no stray /static route serving the working directory
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    app.json.sort_keys = False  # type: ignore[attr-defined]
    ctx = context or ApiContext(gateway)
    limiter = limiter or FailureLimiter()
    auth_of: dict[str, str] = {}
    install(app)

    for route in all_routes():
        endpoint = f"{route.handler.__name__}_{route.method.lower()}"
        auth_of[endpoint] = route.auth
        app.add_url_rule(route.path, endpoint, _view(route, ctx), methods=[route.method])

    @app.before_request
    def _authenticate() -> Response | None:
        if request.url_rule is None or request.endpoint is None:
            return None  # 404/405 from routing are raised next, without a token check
        level = auth_of.get(request.endpoint, "admin")
        if level == "public":
            return None
        client = request.remote_addr or "?"
        wait_s = limiter.retry_after(client)
        if wait_s > 0:
            raise ApiError(429, "too many failed logins; try later", headers={"Retry-After": str(math.ceil(wait_s))})
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        role = tokens.role_of(token.strip()) if scheme.lower() == "bearer" and token.strip() else None
        if role is None:
            limiter.failed(client)
            raise ApiError(401, "send Authorization: Bearer <token>", headers={"WWW-Authenticate": "Bearer"})
        if level == "admin" and role != "admin":
            raise ApiError(403, "this needs the admin token")
        g.role = role
        return None

    @app.after_request
    def _headers(resp: Response) -> Response:
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Cache-Control"] = "no-store"
        _audit(gateway, resp)
        return resp

    return app


MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _audit(gateway: Any, resp: Response) -> None:
    """Put an authenticated change (even a refused one) into the action history: who, what, HTTP status."""
    role = g.get("role")
    if role is None or request.method not in MUTATING:
        return
    audit = (getattr(gateway, "services", None) or {}).get("audit")
    if audit is not None:
        result = "ok" if resp.status_code < 400 else f"refused: {resp.status_code}"
        audit.record(f"{role}@{request.remote_addr or '?'}", f"{request.method} {request.path}", result)


def _view(route: Route, ctx: ApiContext) -> Any:
    def view(**kwargs: Any) -> Any:
        result = route.handler(ctx, **kwargs)
        if isinstance(result, Response):
            return result
        resp = jsonify(result)
        resp.status_code = route.status
        return resp

    view.__name__ = route.handler.__name__
    view.__doc__ = route.handler.__doc__
    return view


__all__ = ["create_app", "error_response"]
