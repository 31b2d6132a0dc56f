"""A small reader for the project's Dockerfile: stages, their instructions, exec-form arrays."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
TARGETS = ("server", "bluetooth", "modbus_slave")


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [arg for kw, arg in self.instructions if kw == keyword]

    def last(self, keyword: str) -> str | None:
        found = self.all(keyword)
        return found[-1] if found else None


def logical_lines(text: str) -> list[str]:
    """Instructions with continuation lines joined and comments dropped."""
    lines, current = [], ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    if current:
        lines.append(current)
    return lines


def parse(text: str) -> tuple[dict[str, str], dict[str, Stage]]:
    """(global ARG defaults, stages by name)."""
    args: dict[str, str] = {}
    stages: dict[str, Stage] = {}
    stage: Stage | None = None
    for line in logical_lines(text):
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        rest = rest.strip()
        if keyword == "FROM":
            m = re.fullmatch(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", rest, re.I)
            assert m, f"cannot read FROM {rest!r}"
            base = m.group(1)
            for name, value in args.items():
                base = base.replace("${" + name + "}", value)
            stage = Stage(m.group(2) or f"stage{len(stages)}", base)
            stages[stage.name] = stage
        elif stage is None:
            if keyword == "ARG" and "=" in rest:
                name, value = rest.split("=", 1)
                args[name] = value
        else:
            stage.instructions.append((keyword, rest))
    return args, stages


def exec_form(arg: str) -> list[str] | None:
    """The JSON array of an exec-form instruction, or None for shell form."""
    try:
        value = json.loads(arg)
    except ValueError:
        return None
    return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None


def chain(stages: dict[str, Stage], name: str) -> list[Stage]:
    """The stage and its ancestors within the file, nearest first."""
    out = []
    while name in stages:
        out.append(stages[name])
        name = stages[name].base
    return out


def effective(stages: dict[str, Stage], name: str, keyword: str) -> str | None:
    """The value of `keyword` a built target ends up with (inherited from parent stages)."""
    for stage in chain(stages, name):
        value = stage.last(keyword)
        if value is not None:
            return value
    return None


def healthcheck_cmd(stages: dict[str, Stage], name: str) -> list[str] | None:
    """The exec-form command of a target's HEALTHCHECK (None for NONE or missing)."""
    value = effective(stages, name, "HEALTHCHECK")
    if value is None or value.strip().upper() == "NONE":
        return None
    m = re.search(r"\bCMD\s+(\[.*\])\s*$", value)
    assert m, f"HEALTHCHECK of {name} is not exec form: {value!r}"
    return exec_form(m.group(1))


STAGES_FILE_TARGETS = frozenset(parse(DOCKERFILE.read_text(encoding="utf-8"))[1])
