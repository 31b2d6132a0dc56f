"""Every environment variable the services, images and compose files read is documented (README or balena.md)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from server.config import FIELDS

ROOT = Path(__file__).resolve().parents[2]
SOURCE_DIRS = ("server", "bluetooth", "modbus_slave")
COMPOSE_FILES = ("docker-compose.yml", "docker-compose-no_crypt.yml", "docker-compose-balena.yml")
DOCS = ("README.md", "balena.md")

# os.environ.get("X"), os.getenv("X"), os.environ["X"], environ.get('X') - and any literal "OHM_..." name.
READ_CALL = re.compile(r"""(?:environ\.get|getenv|environ\[)\(?\s*["']([A-Z][A-Z0-9_]*)["']""")
OHM_LITERAL = re.compile(r"""["'](OHM_[A-Z0-9_]+)["']""")
INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)")


def names_in_source(text: str) -> set[str]:
    """Variables a Python source (or a Python one-liner in a Dockerfile) reads."""
    return set(READ_CALL.findall(text)) | set(OHM_LITERAL.findall(text))


def names_in_compose(text: str) -> set[str]:
    """Variables a compose file sets for its services or interpolates itself."""
    names = set(INTERPOLATION.findall(text))
    for service in (yaml.safe_load(text).get("services") or {}).values():
        env = service.get("environment") or {}
        names |= set(env) if isinstance(env, dict) else {e.split("=", 1)[0] for e in env}
    return names


def settings_names() -> set[str]:
    """The OHM_* names of the server's and the BLE service's settings tables."""
    names = {f.env for f in FIELDS}
    try:
        from bluetooth.config import FIELDS as BLE_FIELDS
    except ImportError:  # the BLE service is not in this tree yet
        BLE_FIELDS = ()
    return names | {f.env for f in BLE_FIELDS}


def read_names() -> dict[str, str]:
    """Every variable read anywhere, with one place it is read."""
    found: dict[str, str] = {name: "settings table" for name in settings_names()}
    for directory in SOURCE_DIRS:
        for path in sorted((ROOT / directory).rglob("*.py")):
            for name in names_in_source(path.read_text(encoding="utf-8")):
                found.setdefault(name, str(path.relative_to(ROOT)))
    for name in COMPOSE_FILES:
        for var in names_in_compose((ROOT / name).read_text(encoding="utf-8")):
            found.setdefault(var, name)
    for var in names_in_source((ROOT / "Dockerfile").read_text(encoding="utf-8")):
        found.setdefault(var, "Dockerfile")
    return found


def undocumented(found: dict[str, str], docs: str) -> list[str]:
    return sorted(f"{name} (read in {where})" for name, where in found.items() if not re.search(rf"\b{name}\b", docs))


def documentation() -> str:
    return "\n".join((ROOT / d).read_text(encoding="utf-8") for d in DOCS if (ROOT / d).exists())


def test_every_variable_read_is_documented() -> None:
    found = read_names()
    assert len(found) > 40, "the scan found too little; is the tree complete?"
    missing = undocumented(found, documentation())
    assert not missing, "document these in README.md or balena.md: " + ", ".join(missing)


def test_the_scan_sees_the_ways_code_reads_the_environment() -> None:
    source = """
import os
a = os.environ.get("OHM_NEW_THING", "")
b = os.getenv('PLAIN_VAR')
c = os.environ["OTHER_VAR"]
p.add_argument("--password-env", default="OHM_SECRET_ENV")
"""
    assert names_in_source(source) == {"OHM_NEW_THING", "PLAIN_VAR", "OTHER_VAR", "OHM_SECRET_ENV"}
    compose = "services:\n  x:\n    image: a:${TAG:-1}\n    environment:\n      OHM_X: ${Y}\n      Z: '1'\n"
    assert names_in_compose(compose) == {"TAG", "Y", "OHM_X", "Z"}


def test_an_undocumented_variable_is_reported() -> None:
    found = {"OHM_DATA_DIR": "settings table", "OHM_NOT_DOCUMENTED_ANYWHERE": "server/x.py"}
    assert undocumented(found, documentation()) == ["OHM_NOT_DOCUMENTED_ANYWHERE (read in server/x.py)"]
