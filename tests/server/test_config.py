"""Configuration: precedence, types, limits and clear messages for bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.config import FIELDS, ConfigError, load, reference


def test_defaults_are_valid() -> None:
    cfg = load(env={})
    assert cfg.log_level == "info"
    assert cfg.workers == 4
    assert all(cfg.sources[f.key] == "default" for f in FIELDS)


def test_precedence_file_env_overrides(tmp_path: Path) -> None:
    path = tmp_path / "ohm.toml"
    path.write_text('log_level = "debug"\nworkers = 2\nstats_interval = 30\n')
    cfg = load(path, env={"OHM_WORKERS": "3"}, overrides={"stats_interval": 10.0, "log_level": None})
    assert cfg.log_level == "debug" and cfg.sources["log_level"] == str(path)
    assert cfg.workers == 3 and cfg.sources["workers"] == "environment OHM_WORKERS"
    assert cfg.stats_interval == 10.0 and cfg.sources["stats_interval"] == "command line"
    assert isinstance(cfg.data_dir, Path)


def test_all_problems_reported_together_with_source_and_hint(tmp_path: Path) -> None:
    path = tmp_path / "ohm.toml"
    path.write_text("workers = 0\nlog_levle = 'info'\n")
    with pytest.raises(ConfigError) as info:
        load(path, env={"OHM_LOG_LEVEL": "loud", "OHM_STATS_INTERVAL": "soon", "OHM_WROKERS": "2"})
    text = str(info.value)
    assert f"{path}: workers = 0: must be at least 1" in text
    assert "unknown setting 'log_levle' (did you mean 'log_level'?)" in text
    assert "environment OHM_LOG_LEVEL: log_level = 'loud': must be one of debug, info, warning, error" in text
    assert "OHM_STATS_INTERVAL: stats_interval = 'soon': must be a number" in text
    assert "unknown variable OHM_WROKERS (did you mean OHM_WORKERS?)" in text
    assert len(info.value.problems) == 5


@pytest.mark.parametrize(
    ("content", "message"),
    [("workers = [", "not valid TOML"), ("workers = true", "must be a whole number"), ("workers = 1.5", "whole")],
)
def test_bad_file_values(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "ohm.toml"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load(path, env={})


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load(tmp_path / "nope.toml", env={})


def test_secrets_never_shown() -> None:
    secrets = [f for f in FIELDS if f.secret]
    if not secrets:
        pytest.skip("no secret settings defined")
    field = secrets[0]
    env = {field.env: "hunter2-secret"}
    cfg = load(env=env)
    assert "hunter2-secret" not in repr(cfg.describe())
    bad_field = next((f for f in secrets if f.type is int), None)
    if bad_field is not None:
        with pytest.raises(ConfigError) as info:
            load(env={bad_field.env: "oops"})
        assert "oops" not in str(info.value)


def test_reference_lists_every_setting() -> None:
    table = reference()
    for f in FIELDS:
        assert f"`{f.env}`" in table


def test_the_ble_services_variables_are_not_the_gateways_business() -> None:
    # One .env serves both containers: OHM_BLE_* and OHM_SERVER_URL belong to bluetooth/config.py.
    cfg = load(None, env={"OHM_BLE_BACKEND": "bless", "OHM_SERVER_URL": "http://127.0.0.1:8080", "OHM_WORKERS": "3"})
    assert cfg.get("workers") == 3
    with pytest.raises(ConfigError, match="unknown variable OHM_BLEBACKEND"):
        load(None, env={"OHM_BLEBACKEND": "bless"})
