"""Settings: the stored layer's precedence and file, and GET/PATCH /api/settings on a live gateway."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from server.config import load
from server.settings import SettingsError, SettingsStore, parse_change, path_in, read_file, write_file
from tests.server.wifi.system_gateway import system_gateway

# ---- the stored layer (pure, no gateway) ----------------------------------------------------


def test_stored_layer_sits_between_the_toml_file_and_the_environment(tmp_path: Path) -> None:
    toml = tmp_path / "ohm.toml"
    toml.write_text('name = "from-toml"\nworkers = 2\n[mqtt]\nkeepalive = 40\n')
    write_file(tmp_path, {"settings": {"name": "from-api", "workers": 3, "mqtt.keepalive": 50}})
    cfg = load(toml, env={"OHM_WORKERS": "5"}, overrides={"data_dir": tmp_path})
    assert cfg["name"] == "from-api" and cfg.sources["name"] == "settings"  # beats TOML
    assert cfg["workers"] == 5 and cfg.sources["workers"].startswith("environment")  # env beats stored
    assert cfg["mqtt.keepalive"] == 50
    cli = load(toml, env={}, overrides={"data_dir": tmp_path, "mqtt.keepalive": 60})
    assert cli["mqtt.keepalive"] == 60 and cli.sources["mqtt.keepalive"] == "command line"
    assert load(toml, env={}, overrides={"data_dir": tmp_path}, stored=False)["name"] == "from-toml"


def test_stored_layer_is_found_through_the_environments_data_dir(tmp_path: Path) -> None:
    write_file(tmp_path, {"settings": {"name": "env-dir"}})
    assert load(None, env={"OHM_DATA_DIR": str(tmp_path)})["name"] == "env-dir"


def test_a_bad_stored_value_is_skipped_not_fatal(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_file(tmp_path, {"settings": {"workers": 999, "gone.key": 1, "name": "kept"}})
    cfg = load(None, env={}, overrides={"data_dir": tmp_path})
    assert cfg["workers"] == 4 and cfg["name"] == "kept"
    assert "workers ignored" in caplog.text and "gone.key" in caplog.text
    path_in(tmp_path).write_text("{not json")
    assert load(None, env={}, overrides={"data_dir": tmp_path})["name"] == ""  # damaged: skipped, boots


def test_changes_are_validated_by_the_config_rules() -> None:
    assert parse_change("mqtt.port", "1884") == 1884 and parse_change("mqtt.tls", True) is True
    assert parse_change("name", None) is None  # null = forget the stored value
    cases = [
        ("mqtt.prot", 1, "did you mean 'mqtt.port'"),
        ("mqtt.port", 70000, "mqtt.port = 70000: must be at most 65535"),
        ("log_level", "loud", "log_level = 'loud': must be one of"),
        ("workers", 2.5, "workers = 2.5: must be a whole number"),
        ("name", ["a"], "name: must be a single value"),
        ("data_dir", "/tmp", "data_dir: cannot be changed here"),
        ("api.port", 0, "api.port = 0 would switch the API off"),
        ("mqtt.password", True, "mqtt.password = (hidden): must be text"),
    ]
    for key, value, expected in cases:
        with pytest.raises(SettingsError) as err:
            parse_change(key, value)
        assert expected in str(err.value), (key, value, str(err.value))


def test_store_writes_atomically_with_mode_0600_and_keeps_the_owner(tmp_path: Path) -> None:
    store = SettingsStore(tmp_path)
    store.save_settings(store.validate({"mqtt.password": "s3cret", "workers": "3"}))
    store.set_owner("alice@example.org", "Roof", force=False, now=1000.0)
    mode = stat.S_IMODE(os.stat(path_in(tmp_path)).st_mode)
    assert mode == 0o600
    doc = read_file(tmp_path)
    assert doc["settings"] == {"mqtt.password": "s3cret", "workers": 3, "name": "Roof"}
    assert doc["owner"]["owner"] == "alice@example.org"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # no temp file left behind
    again = SettingsStore(tmp_path)  # what a restart sees
    assert again.owner()["name"] == "Roof" and again.stored()["workers"] == 3
    again.save_settings({"workers": None})
    assert "workers" not in read_file(tmp_path)["settings"]


def test_a_damaged_file_is_moved_aside_and_the_store_starts_empty(tmp_path: Path) -> None:
    path_in(tmp_path).write_text("{oops")
    store = SettingsStore(tmp_path)
    assert store.stored() == {} and store.owner() is None
    assert [p.name for p in tmp_path.iterdir() if ".damaged-" in p.name]


# ---- the API ----------------------------------------------------------------------------------


@pytest.mark.integration
def test_settings_api_get_patch_and_restart_required(tmp_path: Path) -> None:
    with system_gateway(tmp_path / "gw", env={"OHM_MQTT_KEEPALIVE": "45"}, **{"mqtt.password": "pw-secret"}) as gw:
        admin, reader = gw.client(gw.admin), gw.client(gw.read)
        got = reader.call("GET", "/api/settings")
        assert got.status == 200, got.body
        s = got.json["settings"]
        assert s["mqtt.port"] == {
            "value": 0,
            "default": 0,
            "type": "integer",
            "help": s["mqtt.port"]["help"],
            "source": "default",
            "applies": "restart",
            "secret": False,
            "min": 0,
            "max": 65535,
        }
        assert s["mqtt.password"]["value"] == "***" and b"pw-secret" not in got.body
        assert s["log_level"]["choices"] == ["debug", "info", "warning", "error"]
        assert s["name"]["applies"] == "now" and got.json["restart_required"] == []

        assert reader.call("PATCH", "/api/settings", {"name": "x"}).status == 403
        bad = admin.call("PATCH", "/api/settings", {"mqtt.prot": 1883})
        assert bad.status == 422 and "did you mean 'mqtt.port'" in bad.json["detail"]
        bad = admin.call("PATCH", "/api/settings", {"name": "ok", "mqtt.port": "x"})
        assert bad.status == 422 and bad.json["detail"].startswith("mqtt.port")
        assert "name" not in read_file(gw.gateway.data_dir).get("settings", {})  # all or nothing

        ok = admin.call("PATCH", "/api/settings", {"name": "Roof", "mqtt.port": 1884, "mqtt.keepalive": 60})
        assert ok.status == 200, ok.body
        assert ok.json == {
            "changed": ["mqtt.keepalive", "mqtt.port", "name"],
            "applied": ["name"],
            "overridden": ["mqtt.keepalive"],  # the environment ranks above stored settings
            "restart_required": ["mqtt.port"],
        }
        assert reader.call("GET", "/api/name").json["name"] == "Roof"  # live at once
        after = reader.call("GET", "/api/settings").json
        assert after["settings"]["mqtt.port"]["saved"] == 1884 and after["settings"]["mqtt.port"]["value"] == 0
        assert after["restart_required"] == ["mqtt.port"]
        # the masked secret sent back means "unchanged"
        assert admin.call("PATCH", "/api/settings", {"mqtt.password": "***"}).json["changed"] == []
        stored = json.loads(path_in(gw.gateway.data_dir).read_text())
        assert stored["settings"]["name"] == "Roof" and "mqtt.password" not in stored["settings"]
        actions = reader.call("GET", "/api/actions").json["actions"]
        assert any(a["what"] == "PATCH /api/settings" and a["result"] == "ok" for a in actions)
        admin.close()
        reader.close()
    # a restart takes the stored values
    cfg = load(None, env={}, overrides={"data_dir": tmp_path / "gw"})
    assert cfg["mqtt.port"] == 1884 and cfg["name"] == "Roof"


@pytest.mark.integration
def test_log_level_applies_at_once(tmp_path: Path) -> None:
    import logging

    root = logging.getLogger()
    before = root.level
    try:
        with system_gateway(tmp_path / "gw") as gw:
            admin = gw.client(gw.admin)
            assert admin.call("PATCH", "/api/settings", {"log_level": "error"}).json["applied"] == ["log_level"]
            assert root.level == logging.ERROR
            admin.close()
    finally:
        root.setLevel(before)


def test_live_keys_apply_and_the_rest_wait_for_a_restart(tmp_path: Path) -> None:
    from server.settings import pending_restart, running_with

    write_file(tmp_path, {"settings": {"mqtt.port": 1884}})
    running = load(None, env={"OHM_NAME": "from-env"}, overrides={"data_dir": tmp_path})
    assert running["mqtt.port"] == 1884 and running.sources["mqtt.port"] == "settings"
    new, masked = running_with(running, {"log_level": "debug", "name": "ignored", "workers": 8})
    assert new["log_level"] == "debug" and new.sources["log_level"] == "settings"  # live
    assert new["name"] == "from-env" and masked == ["name"]  # the environment ranks above
    assert new["workers"] == 4  # needs a restart
    assert pending_restart(new, {"log_level": "debug", "mqtt.port": 1884, "workers": 8}) == ["workers"]
    # forgetting the stored port: the running value still came from it until a restart
    assert pending_restart(new, {"log_level": "debug"}) == ["mqtt.port"]
    kept, _ = running_with(new, {"log_level": None})  # forgotten: the TOML or default value comes back on restart
    assert kept["log_level"] == "debug" and pending_restart(kept, {}) == ["log_level", "mqtt.port"]
