"""Odd input from the API or MQTT commands is a clear validation error, never a crash or a path outside profiles."""

from __future__ import annotations

import pytest

from server.devices.commands import parse_read
from server.devices.profile import ProfileError, load_profile
from server.devices.store import DeviceConfig, DeviceConfigError
from server.uplink.commands import CommandFailed


@pytest.mark.parametrize("key", ["../sma", "sma/../../etc/passwd", "a" * 300, "", "sma.yaml", None, 5])
def test_profile_names_never_become_paths(key: object) -> None:
    with pytest.raises(ProfileError, match="no profile"):
        load_profile(key)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"id": 123, "profile": "sma", "host": "h"}, "id: must be text"),
        ({"id": "a", "profile": ["sma"], "host": "h"}, "profile: must be text"),
        ({"id": "a", "profile": "sma", "host": "h", "port": "502"}, "port: must be a whole number"),
        ({"id": "a", "profile": "sma", "host": "h", "interval": "fast"}, "interval: must be a number"),
        ({"id": "a", "profile": "sma", "host": "h", "enabled": 1}, "enabled: must be true or false"),
        ({"id": "a", "profile": "sma", "host": "h", "unit_id": True}, "unit_id: must be a whole number"),
    ],
)
def test_device_fields_of_the_wrong_type(data: dict, message: str) -> None:
    with pytest.raises(DeviceConfigError, match=message):
        DeviceConfig.from_dict(data)


def test_integer_interval_is_accepted() -> None:
    assert DeviceConfig.from_dict({"id": "a", "profile": "sma", "host": "h", "interval": 5}).interval == 5


@pytest.mark.parametrize(
    "args", [{"device": "d", "address": 1, "type": []}, {"device": "d", "address": 1, "words": {}}]
)
def test_unhashable_read_arguments_are_refused(args: dict) -> None:
    with pytest.raises(CommandFailed):
        parse_read(args)
