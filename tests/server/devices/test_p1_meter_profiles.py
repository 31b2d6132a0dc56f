"""Meter profiles (profiles/meters/*.yaml): every shipped one loads; broken ones name the file and field."""

from __future__ import annotations

import re
from typing import Any

import pytest

from server.devices.meters import json_path, load_meter_profile, meter_profile_names, parse_meter_profile
from server.devices.profile import ProfileError, profile_names

GOOD: dict[str, Any] = {
    "maker": "M",
    "model": "m",
    "family": "json",
    "transports": ["homewizard"],
    "points": [{"name": "grid.power_w", "unit": "W", "path": "p"}],
}


def test_every_meter_profile_loads_and_none_shadows_a_modbus_profile() -> None:
    names = meter_profile_names()
    assert names == ["dsmr", "envoy", "homewizard_p1"]
    assert not set(names) & set(profile_names())
    for name in names:
        profile = load_meter_profile(name)
        assert profile.points and profile.transports and profile.source


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"family": "xml"}, "family"),
        ({"transports": ["tcp"]}, "transports"),
        ({"colour": "red"}, "colour"),
        ({"defaults": {"port": 70000}}, "defaults.port"),
        ({"defaults": {"parity": "O"}}, "defaults.parity"),
        ({"points": [{"name": "grid.power_w", "unit": "Wh", "path": "p"}]}, "points[0] (grid.power_w).name"),
        ({"points": [{"name": "grid.powr_w", "unit": "W", "path": "p"}]}, "points[0] (grid.powr_w).name"),
        ({"points": [{"name": "grid.power_w", "unit": "W"}]}, "points[0] (grid.power_w).path"),
        ({"points": [{"name": "x.p", "path": "p", "scale": 0}]}, "points[0] (x.p).scale"),
        ({"derived": [{"name": "grid.import_wh", "unit": "Wh", "sum": ["nope"]}]}, "derived[0].sum"),
    ],
)
def test_broken_meter_profiles_name_file_and_field(change: dict[str, Any], where: str) -> None:
    with pytest.raises(ProfileError, match=rf"bad\.yaml: {re.escape(where)}"):
        parse_meter_profile({**GOOD, **change}, "bad.yaml", "bad")


def test_json_paths() -> None:
    doc = {"a": [{"t": "x", "v": 1}, {"t": "y", "v": 2, "k": [5, 6]}], "b": {"net-c": {"w": 3}}}
    assert json_path(doc, "a[t=y].v") == 2
    assert json_path(doc, "a[t=y].k[1]") == 6
    assert json_path(doc, "b.net-c.w") == 3
    assert json_path(doc, "a[t=z].v") is None
    assert json_path(doc, "a[9]") is None
    assert json_path(doc, "b.w.x") is None
    assert json_path([], "a") is None
