"""Restart for real (a subprocess gateway exits cleanly with 75) and reboot against dbusmock's logind template."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from server.api.system_power import RESTART_EXIT_CODE
from server.uplink.broker import free_port
from tests.server.wifi.privatebus import available, mock_service, private_bus
from tests.server.wifi.system_gateway import system_gateway
from tests.support import wait_for

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]


def _post(port: int, path: str, token: str) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", path, headers={"Authorization": f"Bearer {token}"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def _healthy(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/health")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def test_restart_stops_the_process_cleanly_with_the_restart_exit_code(tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OHM_")}
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "OHM_DATA_DIR": str(data),
            "OHM_API_HOST": "127.0.0.1",
            "OHM_API_PORT": str(port),
            "OHM_API_WS_PORT": "0",
            "OHM_MDNS_ENABLED": "false",
            "OHM_STATS_INTERVAL": "0",
            "OHM_IDENTITY_BACKEND": "software",
            "OHM_SYSTEM_DBUS_ADDRESS": f"unix:path={tmp_path}/no-bus",  # never the machine's own bus
        }
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "server", "run"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: (data / "api_tokens.json").exists() and _healthy(port), 20, why=lambda: str(proc.poll()))
        admin = json.loads((data / "api_tokens.json").read_text())["admin"]
        status, body = _post(port, "/api/system/restart", admin)
        assert status == 202 and body == {"restarting": True, "exit_code": RESTART_EXIT_CODE}
        assert proc.wait(15) == RESTART_EXIT_CODE
        err = proc.stderr.read() if proc.stderr else ""
        assert "restart requested" in err and "stopped cleanly" in err, err
        assert "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()


def test_reboot_asks_logind_on_the_system_bus(tmp_path: Path) -> None:
    if available():
        pytest.skip(available())
    import dbus

    with (
        private_bus(tmp_path) as address,
        mock_service(address, "logind", "org.freedesktop.login1") as conn,
        system_gateway(tmp_path / "gw", **{"system.dbus_address": address}) as gw,
    ):
        mock = dbus.Interface(
            conn.get_object("org.freedesktop.login1", "/org/freedesktop/login1"), "org.freedesktop.DBus.Mock"
        )
        reader, admin = gw.client(gw.read), gw.client(gw.admin)
        assert reader.call("POST", "/api/system/reboot").status == 403
        assert mock.GetMethodCalls("Reboot") == []
        got = admin.call("POST", "/api/system/reboot")
        assert got.status == 202 and got.json == {"rebooting": True}
        calls = mock.GetMethodCalls("Reboot")
        assert len(calls) == 1 and list(calls[0][1]) == [False]  # not interactive
        reader.close()
        admin.close()


def test_reboot_where_logind_says_no_or_is_missing_is_503(tmp_path: Path) -> None:
    if available():
        pytest.skip(available())
    with private_bus(tmp_path) as address:
        with system_gateway(tmp_path / "gw1", **{"system.dbus_address": address}) as gw:
            got = gw.client(gw.admin).call("POST", "/api/system/reboot")
            assert got.status == 503 and "logind is not running" in got.json["detail"]
        with (
            mock_service(address, "logind", "org.freedesktop.login1", '{"CanReboot": "na"}'),
            system_gateway(tmp_path / "gw2", **{"system.dbus_address": address}) as gw,
        ):
            got = gw.client(gw.admin).call("POST", "/api/system/reboot")
            assert got.status == 503 and "CanReboot: na" in got.json["detail"]
    with system_gateway(tmp_path / "gw3", **{"system.dbus_address": f"unix:path={tmp_path}/none"}) as gw:
        got = gw.client(gw.admin).call("POST", "/api/system/reboot")
        assert got.status == 503 and "no system D-Bus" in got.json["detail"]
