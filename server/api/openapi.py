"""The OpenAPI 3.1 document and api.md, both built from the route table so they cannot drift from the code."""

from __future__ import annotations

import json
import re
from typing import Any

import server

from .routes import all_routes

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error", "detail"],
    "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
}
AUTH_TEXT = {"public": "none", "read": "read or admin token", "admin": "admin token"}


def openapi_path(flask_path: str) -> str:
    """Flask `<name>` placeholders as OpenAPI `{name}`."""
    return re.sub(r"<(?:[a-z]+:)?([A-Za-z_]+)>", r"{\1}", flask_path)


def document() -> dict[str, Any]:
    """The whole API as an OpenAPI 3.1 document."""
    paths: dict[str, dict[str, Any]] = {}
    for r in all_routes():
        path = openapi_path(r.path)
        op: dict[str, Any] = {
            "operationId": r.handler.__name__,
            "summary": r.summary,
            "description": f"Auth: {AUTH_TEXT[r.auth]}.",
            "responses": {
                str(r.status): {"description": "success"},
                "default": {
                    "description": "error",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                },
            },
        }
        params = re.findall(r"{([A-Za-z_]+)}", path)
        if params:
            op["parameters"] = [
                {"name": p, "in": "path", "required": True, "schema": {"type": "string"}} for p in params
            ]
        if r.query:
            op.setdefault("parameters", []).extend(
                {"name": q, "in": "query", "required": False, "schema": dict(spec)} for q, spec in r.query.items()
            )
        if r.auth != "public":
            op["security"] = [{"bearer": []}]
        if r.body is not None:
            op["requestBody"] = {"required": True, "content": {"application/json": {"schema": dict(r.body)}}}
        paths.setdefault(path, {})[r.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "Ohm gateway local API", "version": server.__version__},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": ERROR_SCHEMA},
        },
    }


def markdown(doc: dict[str, Any] | None = None) -> str:
    """api.md: one section per endpoint, generated from the OpenAPI document."""
    doc = doc or document()
    out = [
        "# Ohm gateway local API",
        "",
        "Generated from the route table (`python -m server.api.openapi > api.md`); tests check it is current.",
        "",
        "Send `Authorization: Bearer <token>`. The admin and read tokens are created at first boot in",
        "`<data_dir>/api_tokens.json` (mode 0600); the admin token is printed once on the console.",
        'Every error is JSON `{"error": "<code>", "detail": "<text>"}`. Ten failed logins a minute from one',
        "address give 429 with Retry-After.",
        "",
        "| method | path | auth | summary |",
        "|---|---|---|---|",
    ]
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            auth = op["description"].removeprefix("Auth: ").rstrip(".")
            out.append(f"| {method.upper()} | `{path}` | {auth} | {op['summary']} |")
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            queries = [p for p in op.get("parameters", []) if p["in"] == "query"]
            if queries:
                out += ["", f"## {method.upper()} {path}", "", "Query parameters (all optional):", ""]
                out += [f"- `{q['name']}`: {json.dumps(q['schema'])}" for q in queries]
            if "requestBody" in op:
                schema = op["requestBody"]["content"]["application/json"]["schema"]
                out += [
                    "",
                    f"## {method.upper()} {path}",
                    "",
                    "Body:",
                    "",
                    "```json",
                    json.dumps(schema, indent=2),
                    "```",
                ]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
