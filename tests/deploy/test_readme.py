"""The README: its generated tables match their sources, and the sections the project promises are there."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")

_spec = importlib.util.spec_from_file_location("readme_tables", ROOT / "deploy" / "readme_tables.py")
assert _spec is not None and _spec.loader is not None
tables = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tables)

REGENERATE = "regenerate it with `python deploy/readme_tables.py --write`"


def test_supported_devices_table_is_current() -> None:
    block = tables.readme_block(README, "devices-table")
    assert block is not None, "README lost its devices-table markers"
    assert block.strip() == tables.devices_table().strip(), f"README devices table is stale: {REGENERATE}"


def test_devices_table_has_a_row_per_profile_file() -> None:
    files = sorted((ROOT / "server" / "devices" / "profiles").rglob("*.yaml"))
    rows = [line for line in tables.devices_table().splitlines()[2:]]
    assert len(rows) == len(files)
    for path in files:
        assert any(row.startswith(f"| `{path.stem}` |") for row in rows), path.name


def test_devices_table_follows_a_changed_profile(tmp_path: Path) -> None:
    (tmp_path / "acme.yaml").write_text(
        "maker: Acme\nmodel: Sun 1\nkind: inverter\ndefaults: {transport: rtu, unit_id: 7}\n"
        "points:\n  - {name: pv.power_w, address: 1, unit: W}\n"
        "writable:\n  - {name: control.power_limit_w, address: 9}\n",
        encoding="utf-8",
    )
    rows = tables.devices_table(tmp_path).splitlines()
    assert rows[2] == "| `acme` | Acme | Sun 1 | inverter | Modbus RTU (RS-485), unit 7 | 1 | control.power_limit_w |"


def test_ble_settings_table_is_current() -> None:
    table = tables.ble_settings_table()
    if table is None:
        pytest.skip("bluetooth/config.py is not in this tree")
    block = tables.readme_block(README, "ble-settings")
    assert block is not None, "README lost its ble-settings markers"
    assert block.strip() == table.strip(), f"README BLE settings table is stale: {REGENERATE}"


def test_render_replaces_only_between_markers() -> None:
    begin, end = tables.markers("devices-table")
    text = f"intro\n{begin}\nold rows\n{end}\noutro\n"
    out = tables.render(text)
    assert out.startswith("intro\n") and out.endswith(f"{end}\noutro\n")
    assert "old rows" not in out and tables.devices_table() in out


@pytest.mark.parametrize(
    "heading",
    ["Quick start", "Supported devices", "Configuration", "Deployment", "Security model", "Troubleshooting"],
)
def test_readme_has_the_promised_sections(heading: str) -> None:
    assert re.search(rf"^## {heading}$", README, re.M), f"README lost its '{heading}' section"


def test_quick_start_names_make_and_docker_compose() -> None:
    quick = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    for command in ("make demo", "make test", "docker compose up"):
        assert command in quick, command


def test_security_model_covers_the_essentials() -> None:
    security = README.split("## Security model", 1)[1].split("\n## ", 1)[0]
    for topic in ("token", "PoP", "sign", "signing oracle", "0600"):
        assert topic in security, topic


def test_readme_links_resolve() -> None:
    for target in re.findall(r"\]\(([^)#:]+)\)", README):
        assert (ROOT / target).exists(), f"README links to missing {target}"


def test_no_section_appears_twice() -> None:
    headings = re.findall(r"^## (.+)$", README, re.M)
    twice = sorted({h for h in headings if headings.count(h) > 1})
    assert not twice, f"README has these sections more than once (a merge went wrong): {twice}"
