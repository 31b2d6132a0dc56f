"""Every operation in the gateway's own OpenAPI document has a test in this suite."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import pytest

from .conftest import Gateway


def _tested_operations() -> set[str]:
    """The operations named by @pytest.mark.endpoint in every test module here (whatever was selected)."""
    ops: set[str] = set()
    for mod in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if not mod.name.startswith("test_"):
            continue
        module = importlib.import_module(f"{__package__}.{mod.name}")
        for obj in vars(module).values():
            for mark in getattr(obj, "pytestmark", []):
                if mark.name == "endpoint":
                    ops.update(mark.args)
    return ops


@pytest.mark.endpoint("GET /api/openapi.json")
def test_every_endpoint_has_a_test(gw: Gateway) -> None:
    got = gw.call("GET", "/api/openapi.json", token=None)
    assert got.status == 200 and got.json["openapi"].startswith("3.")
    ops = {f"{m.upper()} {p}" for p, item in got.json["paths"].items() for m in item if not m.startswith("x-")}
    tested = _tested_operations()
    assert tested - ops == set(), "tests name operations the document does not have"
    assert ops - tested == set(), "operations without a test"
