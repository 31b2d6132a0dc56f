"""Turn canonical values into the register image a real device of a profile would show (pure)."""

from __future__ import annotations

from server.devices import sunspec
from server.devices.codec import encode_point, pack
from server.devices.profile import Profile

# Scale factors the simulator writes into SunSpec *_SF registers, by unit: realistic, and they
# exercise negative exponents in the decoder.
SIM_SF = {"W": 0, "Wh": 0, "V": -1, "Hz": -2, "degC": -1, "%": 0, "A": -2}

Image = dict[tuple[int, int], int]


def sunspec_models(profile: Profile) -> list[int]:
    """The chain of models a simulated device of this profile carries (first listed of each point)."""
    chain: list[int] = []
    for p in profile.points:
        if p.model and p.model[0] not in chain:
            chain.append(p.model[0])
    return sorted(chain, key=lambda m: (m // 100 if m < 800 else 9, m))


def _text(s: str, regs: int) -> list[int]:
    raw = s.encode("ascii")[: regs * 2].ljust(regs * 2, b"\0")
    return [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]


def header(profile: Profile, serial: str, models: dict[int, int], fc: int = 3) -> Image:
    """SunSpec header, common model 1 and the chain of model IDs/lengths."""
    img: Image = {}
    base = profile.sunspec_base

    def put(addr: int, regs: list[int]) -> None:
        for i, r in enumerate(regs):
            img[(fc, addr + i)] = r

    put(base, list(sunspec.SUNS))
    common = _text(profile.maker, 16) + _text("Ohm simulator", 16) + _text("", 8) + _text("1.0", 8)
    common += [*_text(serial, 16), 1, 0x8000]
    put(models[1], [1, sunspec.LENGTHS[1], *common])
    for mid, addr in models.items():
        if mid in (1, sunspec.END):
            continue
        put(addr, [mid, sunspec.LENGTHS[mid]])
    put(models[sunspec.END], [sunspec.END, 0])
    return img


def device_layout(profile: Profile) -> tuple[Profile, dict[int, int] | None]:
    """The profile with absolute addresses as the simulated device lays them out, and its SunSpec chain."""
    if profile.sunspec:
        models = sunspec.layout(sunspec_models(profile), profile.sunspec_base)
        return profile.resolved(models), models
    if profile.detect.get("sunspec"):
        # fixed-layout SunSpec devices (SolarEdge): header, common model and inverter model 103 only
        return profile, {1: 40002, 103: 40069, sunspec.END: 40121}
    return profile, None


def build_image(profile: Profile, values: dict[str, float], serial: str = "SIM0001") -> Image:
    """Registers for every point of `profile` showing `values` (missing values show 0)."""
    resolved, models = device_layout(profile)
    img: Image = header(resolved, serial, models) if models else {}
    for p in resolved.points:
        sf = SIM_SF.get(p.unit, 0)
        if p.sf is not None:
            img[(p.fc, p.sf)] = pack(sf, "int16")[0]
        regs = encode_point(p, float(values.get(p.name, 0.0)), sf)
        for i, r in enumerate(regs):
            img[(p.fc, p.address + i)] = r
    return img
