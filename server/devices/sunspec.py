"""SunSpec model chain: detect "SunS" and find where each model starts (pure, over a read function)."""

from __future__ import annotations

from collections.abc import Callable

SUNS = (0x5375, 0x6E53)  # "SunS"
BASES = (40000, 0, 50000)  # where devices put the header, most common first
END = 0xFFFF
# Register lengths (after ID and L) the simulator uses when it lays out a chain.
LENGTHS = {1: 66, 101: 50, 102: 50, 103: 50, 111: 60, 112: 60, 113: 60, 201: 105, 202: 105, 203: 105, 204: 105, 802: 62}

ReadFn = Callable[[int, int], list[int]]


class NotSunSpec(LookupError):
    """No SunSpec header where one was expected."""


def find_base(read: ReadFn, bases: tuple[int, ...] = BASES) -> int:
    """The address of the "SunS" header; NotSunSpec if none of `bases` carries it."""
    for base in bases:
        try:
            regs = read(base, 2)
        except Exception:  # noqa: BLE001 - an exception reply just means "not here"
            continue
        if tuple(regs[:2]) == SUNS:
            return base
    raise NotSunSpec("no SunSpec header at " + ", ".join(map(str, bases)))


def walk(read: ReadFn, base: int, max_models: int = 32) -> dict[int, int]:
    """Models found after the header at `base`: {model id: address of its ID register}."""
    models: dict[int, int] = {}
    addr = base + 2
    for _ in range(max_models):
        model_id, length = read(addr, 2)
        if model_id == END or model_id == 0:
            break
        models.setdefault(model_id, addr)
        addr += 2 + length
    return models


def common_strings(regs: list[int]) -> dict[str, str]:
    """Manufacturer, model and serial from the 66 registers of model 1 after ID and L."""

    def text(a: int, n: int) -> str:
        raw = b"".join(r.to_bytes(2, "big") for r in regs[a : a + n])
        return raw.split(b"\0", 1)[0].decode("ascii", "replace").strip()

    return {"manufacturer": text(0, 16), "model": text(16, 16), "serial": text(48, 16)}


def layout(model_ids: list[int], base: int = 40000) -> dict[int, int]:
    """Where a chain of `model_ids` (after model 1) starts, as a device would lay it out."""
    out = {1: base + 2}
    addr = base + 2 + 2 + LENGTHS[1]
    for mid in model_ids:
        out[mid] = addr
        addr += 2 + LENGTHS[mid]
    out[END] = addr
    return out
