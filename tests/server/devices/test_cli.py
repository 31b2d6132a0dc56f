"""`python -m server profiles` and `python -m server scan` as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from modbus_slave.server import Simulator


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "server", *args], capture_output=True, text=True, timeout=60)


def test_profiles_lists_bundled_and_names_bad_field(tmp_path: Path) -> None:
    ok = run("profiles")
    assert ok.returncode == 0 and "sma" in ok.stdout and "huawei_sun2000" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("maker: X\nmodel: Y\nkind: meter\npoints: [{name: grid.power_w, address: -1, unit: W}]\n")
    out = run("profiles", str(bad))
    assert out.returncode == 1
    assert f"{bad}: points[0] (grid.power_w).address: must be between 0 and 65535" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.integration
def test_scan_finds_simulator() -> None:
    sim = Simulator("sma", clock=lambda: 1_699_963_200.0).start()
    try:
        out = run("scan", "--hosts", "127.0.0.1", "--ports", str(sim.port), "--units", "3", "--json")
    finally:
        sim.stop()
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout)
    assert [(f["port"], f["unit_id"], f["profile"]) for f in found] == [(sim.port, 3, "sma")]


def test_scan_needs_a_target() -> None:
    out = run("scan")
    assert out.returncode == 2 and "give --hosts or --serial" in out.stderr
