"""The OpenAPI document and api.md match the Flask routes (one route table, so they cannot drift)."""

from __future__ import annotations

from pathlib import Path

from server.api.app import create_app
from server.api.openapi import document, markdown, openapi_path
from server.api.tokens import Tokens

ROOT = Path(__file__).resolve().parents[3]


class _Gateway:
    services: dict[str, object] = {}


def _flask_routes() -> set[tuple[str, str]]:
    app = create_app(_Gateway(), Tokens("a" * 20, "r" * 20))
    out = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            out.add((method, openapi_path(rule.rule)))
    return out


def test_every_route_is_documented_and_nothing_else() -> None:
    doc = document()
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert documented == _flask_routes()
    assert any(p.startswith("/api/devices/{device_id}") for _, p in documented)
    assert doc["openapi"].startswith("3.1")


def test_no_signing_endpoint() -> None:
    assert not any("sign" in p for p in document()["paths"])


def test_api_md_is_current() -> None:
    assert (ROOT / "api.md").read_text(encoding="utf-8") == markdown(), (
        "api.md is stale: regenerate it with python -m server.api.openapi > api.md"
    )


def test_openapi_is_served(api_gateway) -> None:  # type: ignore[no-untyped-def]
    c = api_gateway.client()
    try:
        got = c.call("GET", "/api/openapi.json")
        assert got.status == 200 and got.json == document()
    finally:
        c.close()
