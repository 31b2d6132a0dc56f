"""`python -m server` as a user runs it: help, config errors, the demo, a timed run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OHM_")}
    return subprocess.run(
        [sys.executable, "-m", "server", *args],
        cwd=ROOT,
        env={**clean, "PYTHONPATH": str(ROOT), "OHM_API_HOST": "127.0.0.1", "OHM_API_PORT": "0", **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_help_explains_options_and_environment() -> None:
    result = run("--help")
    assert result.returncode == 0
    for text in ("--config", "--data-dir", "--demo", "OHM_LOG_LEVEL", "OHM_DATA_DIR"):
        assert text in result.stdout


def test_bad_config_is_a_clear_message_not_a_traceback(tmp_path: Path) -> None:
    result = run("--check-config", env={"OHM_WORKERS": "many", "OHM_DATA_DIR": str(tmp_path)})
    assert result.returncode == 2
    assert "invalid configuration" in result.stderr and "OHM_WORKERS" in result.stderr
    assert "Traceback" not in result.stderr


def test_check_config_prints_settings_and_sources(tmp_path: Path) -> None:
    result = run("--check-config", env={"OHM_DATA_DIR": str(tmp_path)})
    assert result.returncode == 0
    assert "environment OHM_DATA_DIR" in result.stdout


def test_a_stop_during_start_up_is_a_clean_exit(tmp_path: Path) -> None:
    # --run-for shorter than the start-up: the stop lands while services attach (like an early SIGTERM).
    result = run("--run-for", "0.05", env={"OHM_DATA_DIR": str(tmp_path / "d")})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "stopped cleanly" in result.stderr


def test_timed_run_boots_and_stops_cleanly(tmp_path: Path) -> None:
    result = run("--run-for", "1.5", env={"OHM_DATA_DIR": str(tmp_path / "d"), "OHM_STATS_INTERVAL": "0.5"})
    assert result.returncode == 0, result.stderr
    assert "state booting -> provisioning" in result.stderr  # first boot: no owner or network yet
    assert "engine: uptime" in result.stderr
    assert "stopped cleanly" in result.stderr
    assert (tmp_path / "d").is_dir()
    assert (tmp_path / "d").stat().st_mode & 0o077 == 0
