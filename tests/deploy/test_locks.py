"""The lock files the images install: every declared dependency pinned with hashes, one version per package."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
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


# Image -> (packages copied into it, the lock its venv comes from).
IMAGES = {
    "server": (("server",), "requirements-atecc.lock"),
    "bluetooth": (("server", "bluetooth"), "requirements-ble.lock"),
    "modbus_slave": (("server", "modbus_slave"), "requirements.lock"),
}
# Module-level imports the image may lack on purpose: chosen at run time, never on the image's path.
NOT_IN_IMAGE = {
    ("bluetooth/central.py", "bumble"): "a test/dev BLE central, not run by the service",
    ("bluetooth/backends/bumble_backend.py", "bumble"): "the bumble backend; the image runs bless (BlueZ)",
}
LOCAL = {"server", "bluetooth", "modbus_slave", "__future__"}


def module_level_imports(path: Path) -> set[str]:
    """Top-level distributions' import names a module needs just to be imported (try/except and lazy imports
    inside functions are optional by construction)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in LOCAL}


@pytest.mark.parametrize("image", IMAGES)
def test_every_module_level_import_is_in_the_image_lock(image: str) -> None:
    packages, lock = IMAGES[image]
    locked = set(pins(ROOT / lock))
    providers = packages_distributions()
    missing = []
    for package in packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            for name in module_level_imports(path):
                if (rel, name) in NOT_IN_IMAGE:
                    continue
                dists = {canonical(d) for d in providers.get(name, [name])}
                if not dists & locked:
                    missing.append(f"{rel} imports {name} ({', '.join(sorted(dists))})")
    assert not missing, f"not in {lock} (add to pyproject.toml, then make lock): " + "; ".join(missing)


def test_the_import_scan_skips_optional_imports(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "import os\nimport yaml\nfrom paho.mqtt import client\ntry:\n    import cryptoauthlib\nexcept ImportError:\n"
        "    pass\n\ndef f():\n    import bumble\n",
        encoding="utf-8",
    )
    assert module_level_imports(module) == {"yaml", "paho"}
