"""The README's configuration table is the one the code generates."""

from __future__ import annotations

import re
from pathlib import Path

from server.config import reference

ROOT = Path(__file__).resolve().parents[2]


def test_readme_config_reference_is_current() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- config-reference:.*?-->\n(.*?)\n<!-- end config-reference -->", readme, re.S)
    assert match, "README lost its config-reference block"
    assert match.group(1).strip() == reference().strip(), (
        "README config table is stale: regenerate it with "
        "python -c 'from server.config import reference; print(reference())'"
    )


def test_readme_names_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "make demo" in readme and "make test" in readme
