"""`make demo` end to end: simulated devices -> gateway -> signed batches -> local broker -> verifying consumer."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from server.uplink.broker import Broker

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.integration
def test_demo_shows_signed_readings_reaching_the_consumer(tmp_path: Path) -> None:
    if not Broker.available():
        if os.environ.get("CI"):
            pytest.fail("mosquitto is not installed; `make sysdeps` must install it in CI")
        pytest.skip("mosquitto is not installed")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OHM_")}
    result = subprocess.run(
        [sys.executable, "-m", "server", "--demo", "--run-for", "7", "--data-dir", str(tmp_path / "demo")],
        cwd=ROOT,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "demo-inverter: online" in out and "demo-meter: online" in out, out
    stored = [int(n) for n in re.findall(r"consumer: (\d+) signed readings verified", out)]
    assert stored and stored[-1] > 0, out
    assert re.search(r"0 duplicates, 0 rejected", out)
    # Claimed and wired: the demo goes online, never into the provisioning window.
    assert "-> provisioning" not in result.stderr, result.stderr[-3000:]
    assert re.search(r"-> online", result.stderr), result.stderr[-3000:]
