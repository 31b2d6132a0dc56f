"""The lock files the images install: every declared dependency pinned with hashes, one version per package."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOCKS = {name: ROOT / name for name in ("requirements.lock", "requirements-atecc.lock", "requirements-ble.lock")}
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)", re.M)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(spec: str) -> str:
    return canonical(re.split(r"[\s<>=!~\[;]", spec.strip(), maxsplit=1)[0])


def pins(path: Path) -> dict[str, str]:
    return {canonical(n): v for n, v in PIN.findall(path.read_text(encoding="utf-8"))}


def entries(path: Path) -> list[str]:
    """Each requirement with its continuation lines (comments dropped)."""
    text = re.sub(r"^\s*#.*\n", "", path.read_text(encoding="utf-8"), flags=re.M)
    return [e for e in re.split(r"\n(?=\S)", text) if e.strip()]


PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


@pytest.mark.parametrize("name", LOCKS)
def test_every_entry_is_pinned_with_hashes(name: str) -> None:
    for entry in entries(LOCKS[name]):
        assert PIN.match(entry), f"{name}: not an exact pin: {entry.splitlines()[0]}"
        assert "--hash=sha256:" in entry, f"{name}: no hash for {entry.splitlines()[0]}"


def test_core_lock_pins_every_dependency_of_pyproject() -> None:
    core = pins(LOCKS["requirements.lock"])
    for spec in PROJECT["dependencies"]:
        assert requirement_name(spec) in core, f"{spec} is not in requirements.lock (run make lock)"


def test_image_locks_add_the_chip_and_bluez_libraries() -> None:
    atecc, ble = pins(LOCKS["requirements-atecc.lock"]), pins(LOCKS["requirements-ble.lock"])
    for spec in PROJECT["optional-dependencies"]["atecc"]:
        assert requirement_name(spec) in atecc, spec
    assert "bless" in ble
    assert "bumble" not in ble, "bumble cannot be installed on armv7 (libusb-package has no sdist)"
    core = pins(LOCKS["requirements.lock"])
    for lock in (atecc, ble):
        assert set(core) <= set(lock), "an image lock misses core dependencies"


def test_one_version_per_package_across_the_locks() -> None:
    seen: dict[str, tuple[str, str]] = {}
    for name, path in LOCKS.items():
        for package, version in pins(path).items():
            first = seen.setdefault(package, (version, name))
            assert first[0] == version, f"{package}: {version} in {name} but {first[0]} in {first[1]}"


def test_the_lock_inputs_are_where_make_lock_says() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    for name in LOCKS:
        assert f"-o {name}" in makefile, f"make lock does not write {name}"
    assert (ROOT / "deploy" / "bluetooth.in").is_file()
