"""Pure read planner: merge the registers a profile needs into the fewest read requests."""

from __future__ import annotations

from dataclasses import dataclass

from .profile import Profile


@dataclass(frozen=True, slots=True)
class Read:
    """One read request: function code, first address, register count."""

    fc: int
    address: int
    count: int

    @property
    def end(self) -> int:
        """One past the last address read."""
        return self.address + self.count


def needed(profile: Profile) -> set[tuple[int, int, int]]:
    """Every (fc, address, count) span the profile's points and scale-factor registers need."""
    out: set[tuple[int, int, int]] = set()
    for p in profile.points:
        out.add((p.fc, p.address, p.count))
        if p.sf is not None:
            out.add((p.fc, p.sf, 1))
    return out


def plan(wanted: set[tuple[int, int, int]], max_registers: int = 100, max_gap: int = 10) -> list[Read]:
    """Merge spans per function code into reads of at most `max_registers`, bridging gaps of <= `max_gap`.

    A multi-register value is never split over two reads (some devices reject half a 32-bit value).
    """
    if max_registers < 4:
        raise ValueError("max_registers must be at least 4 (the widest value)")
    reads: list[Read] = []
    for fc in sorted({s[0] for s in wanted}):
        spans = sorted((a, a + n) for f, a, n in wanted if f == fc)
        start, end = spans[0]
        for a, e in spans[1:]:
            if a - end > max_gap or max(end, e) - start > max_registers:
                reads.append(Read(fc, start, end - start))
                start, end = a, e
            else:
                end = max(end, e)
        reads.append(Read(fc, start, end - start))
    return reads


def plan_profile(profile: Profile) -> list[Read]:
    """The reads for one poll of a (resolved) profile within its quirks."""
    wanted = needed(profile)
    if not wanted:
        return []
    return plan(wanted, profile.quirks.max_registers, profile.quirks.max_gap)
