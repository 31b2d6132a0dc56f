"""A private system bus (own dbus-daemon) with python-dbusmock templates on it, torn down in `finally`.

Nothing here touches the machine's own buses: the address is handed to clients explicitly, and only
the mock's subprocess gets DBUS_SYSTEM_BUS_ADDRESS in its environment.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_type="method_return"/>
    <allow send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="signal"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
  </policy>
</busconfig>
"""


def available() -> str | None:
    """Why a private bus cannot run here (None if it can)."""
    if shutil.which("dbus-daemon") is None:
        return "dbus-daemon is not installed (apt-get install dbus)"
    try:
        import dbus  # noqa: F401
        import dbusmock  # noqa: F401
    except ImportError as exc:
        return f"python-dbusmock/dbus-python missing: {exc}"
    return None


def _accepts(path: Path) -> bool:
    import socket as sockets

    with sockets.socket(sockets.AF_UNIX, sockets.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def _end(proc: subprocess.Popen[bytes]) -> None:
    """Terminate `proc`, killing it if it has not exited within 5 s."""
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def private_bus(tmp: Path) -> Iterator[str]:
    """Start a dbus-daemon of our own; yields its address."""
    # A unix socket path has a 108-byte limit; pytest's tmp_path grows with the test name, so keep it short.
    short = Path(tempfile.mkdtemp(prefix="ohm-bus-", dir="/tmp"))
    socket = short / "bus"
    conf = tmp / "bus.conf"
    conf.write_text(CONFIG.format(socket=socket))
    proc = subprocess.Popen(
        ["dbus-daemon", f"--config-file={conf}", "--nofork", "--nopidfile", "--nosyslog"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 10
        while not _accepts(socket):  # the file appears before the daemon listens on it
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dbus-daemon did not start: {proc.stderr.read().decode() if proc.stderr else ''}")
            time.sleep(0.01)
        yield f"unix:path={socket}"
    finally:
        _end(proc)
        if proc.stderr:
            proc.stderr.close()
        shutil.rmtree(short, ignore_errors=True)


@contextmanager
def mock_service(address: str, template: str, bus_name: str, parameters: str | None = None) -> Iterator[Any]:
    """Run `python -m dbusmock --template T` on the private bus; yields a dbus-python connection to it."""
    import dbus

    env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": address}
    args = [sys.executable, "-m", "dbusmock", "--system", "--template", template]
    if parameters:
        args += ["--parameters", parameters]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    conn = None
    try:
        conn = dbus.bus.BusConnection(address)
        deadline = time.monotonic() + 15
        while not conn.name_has_owner(bus_name):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dbusmock {template} did not come up")
            time.sleep(0.02)
        yield conn
    finally:
        if conn is not None:
            conn.close()
        _end(proc)


PSK = 0x100  # NM80211ApSecurityFlags KEY_MGMT_PSK (the template maps exactly this value)


@dataclass
class MockNM:
    """The private bus address, the mock's control interface and its Wi-Fi device."""

    address: str
    mock: Any
    device: str

    def add_ap(self, name: str, ssid: str, strength: int, security: int = PSK) -> str:
        """Add an access point to the Wi-Fi device (template method AddAccessPoint)."""
        mac = "00:11:22:33:44:55"
        return str(self.mock.AddAccessPoint(self.device, name, ssid, mac, 2, 2437, 54000, strength, security))


@pytest.fixture
def mock_nm(tmp_path: Path) -> Iterator[MockNM]:
    why = available()
    if why:
        pytest.skip(why)
    import dbus

    with (
        private_bus(tmp_path) as address,
        mock_service(address, "networkmanager", "org.freedesktop.NetworkManager") as conn,
    ):
        obj = conn.get_object("org.freedesktop.NetworkManager", "/org/freedesktop/NetworkManager")
        mock = dbus.Interface(obj, "org.freedesktop.DBus.Mock")
        device = str(mock.AddWiFiDevice("wlan0", "wlan0", 30))  # 30 = disconnected
        yield MockNM(address, mock, device)
