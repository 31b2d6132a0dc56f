"""`python -m bluetooth`: help, the label code, and clear errors (subprocesses, as an operator runs them)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from bluetooth import pop as popcode
from bluetooth.forward import Forwarder, ForwardError

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bluetooth", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_help_lists_the_commands() -> None:
    out = run("--help")
    assert out.returncode == 0 and "run" in out.stdout and "pop" in out.stdout
    assert "--button-pin" in run("run", "--help").stdout


def test_pop_shows_the_label_code_and_keeps_it(tmp_path: Path) -> None:
    first = run("pop", "--data-dir", str(tmp_path))
    assert first.returncode == 0, first.stderr
    code = first.stdout.strip()
    assert len(code) == 11 and code[5] == "-" and popcode.is_valid(code.replace("-", ""))
    assert stat.S_IMODE(os.stat(tmp_path / popcode.POP_FILE).st_mode) == 0o600
    again = run("pop", env={"OHM_DATA_DIR": str(tmp_path)})
    assert again.stdout.strip() == code and again.stderr == ""


def test_bad_settings_and_a_missing_controller_are_one_clear_line(tmp_path: Path) -> None:
    bad = run("run", env={"OHM_BLE_POLL_INTERVAL": "soon", "OHM_DATA_DIR": str(tmp_path)})
    assert bad.returncode == 2 and "ble.poll_interval" in bad.stderr and "Traceback" not in bad.stderr
    down = run(
        "run",
        "--backend",
        "bumble",
        "--transport",
        "tcp-client:127.0.0.1:1",
        "--server-url",
        "http://127.0.0.1:1",
        "--data-dir",
        str(tmp_path),
    )
    assert down.returncode == 1 and "did not start" in down.stderr and "Traceback" not in down.stderr


def test_forwarder_refuses_paths_outside_the_api(tmp_path: Path) -> None:
    fwd = Forwarder("http://127.0.0.1:1", tmp_path, timeout=1)
    for path in ("/doc", "/api/../doc", "/api/x y", "/api/\tx", "/api/é", 5):
        try:
            fwd.call("GET", path)  # type: ignore[arg-type]
        except ForwardError as exc:
            assert exc.code == "bad_path"
        else:
            raise AssertionError(path)
    try:
        fwd.call("TRACE", "/api/state")
    except ForwardError as exc:
        assert exc.code == "bad_request"
    try:
        fwd.call("GET", "/api/state")
    except ForwardError as exc:
        assert (exc.status, exc.code) == (502, "server_unreachable")
