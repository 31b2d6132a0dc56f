"""Record register dumps of every profile from the simulator at a fixed instant (noon UTC).

Run `.venv/bin/python -m tests.server.devices.record_dumps` to refresh tests/server/devices/dumps/*.json.
The expected readings in test_profiles.py are computed by hand, not from this script.
"""

from __future__ import annotations

import json
from pathlib import Path

from modbus_slave.image import build_image, device_layout
from modbus_slave.model import PlantModel
from server.devices.plan import plan_profile
from server.devices.profile import load_all

NOON = 1_699_963_200.0  # 2023-11-14 12:00:00 UTC
DUMPS = Path(__file__).with_name("dumps")


def record() -> None:
    DUMPS.mkdir(exist_ok=True)
    for key, profile in load_all().items():
        img = build_image(profile, PlantModel(NOON).values(NOON))
        resolved, _ = device_layout(profile)
        regs = {}
        for read in plan_profile(resolved):
            for a in range(read.address, read.end):
                regs[f"{read.fc}:{a}"] = img.get((read.fc, a), 0)
        # the SunSpec header and chain, for the model walk
        for (fc, a), v in img.items():
            if fc == 3 and 40000 <= a < 40400:
                regs.setdefault(f"{fc}:{a}", v)
        out = {"profile": key, "time": NOON, "registers": dict(sorted(regs.items(), key=lambda kv: _k(kv[0])))}
        (DUMPS / f"{key}.json").write_text(json.dumps(out, indent=0) + "\n")


def _k(s: str) -> tuple[int, int]:
    fc, a = s.split(":")
    return int(fc), int(a)


if __name__ == "__main__":
    record()
