"""A 5-field cron subset (minute hour day-of-month month day-of-week) and its next run time.

Written here rather than taken from a library: the subset is ~80 lines with table tests, and
the one candidate (croniter) changed hands and was declared unmaintained in 2024. Supported per
field: `*`, numbers, `a-b` ranges, `,` lists and `/n` steps; day-of-week 0-7 (0 and 7 = Sunday).
As in classic cron, when both day fields are restricted a day matching either one runs.
Times are evaluated in a given time zone (local time by default) so "0 13 * * *" means 13:00 there.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo

FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 7))
MAX_DAYS = 366 * 5  # "30 2 31 2 *" (never) must end the search


class CronError(ValueError):
    """A cron string that does not parse; the message names the field."""


@dataclass(frozen=True)
class Cron:
    """A parsed cron expression: the allowed values of each field."""

    text: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday ... 6 = Saturday
    any_day: bool
    any_weekday: bool

    def day_matches(self, d: date) -> bool:
        """Whether the cron runs on this calendar day."""
        if d.month not in self.months:
            return False
        dom = d.day in self.days
        dow = (d.isoweekday() % 7) in self.weekdays
        if self.any_day and self.any_weekday:
            return True
        if self.any_day:
            return dow
        if self.any_weekday:
            return dom
        return dom or dow

    def next_after(self, ts: float, tz: tzinfo | None = None) -> float | None:
        """The first run strictly after epoch `ts` (None if there is none within five years)."""
        zone = tz or datetime.now().astimezone().tzinfo or UTC
        start = datetime.fromtimestamp(ts, zone).replace(second=0, microsecond=0) + timedelta(minutes=1)
        day = start.date()
        for _ in range(MAX_DAYS):
            if self.day_matches(day):
                for h in self.hours:
                    for m in self.minutes:
                        when = datetime.combine(day, time(h, m), zone)
                        # A wall time skipped by a DST change does not exist: it does not run that day.
                        if when.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != when.replace(tzinfo=None):
                            continue
                        if when >= start:
                            return when.timestamp()
            day += timedelta(days=1)
        return None


def _field(text: str, name: str, lo: int, hi: int) -> tuple[set[int], bool]:
    values: set[int] = set()
    for part in text.split(","):
        body, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"{name}: step {step_text!r} must be a positive number")
            step = int(step_text)
        if body == "*":
            a, b = lo, hi
        elif "-" in body:
            a_text, _, b_text = body.partition("-")
            if not (a_text.isdigit() and b_text.isdigit()):
                raise CronError(f"{name}: {part!r} is not a range like 1-5")
            a, b = int(a_text), int(b_text)
        elif body.isdigit():
            a = b = int(body)
            if step_text:
                b = hi
        else:
            raise CronError(f"{name}: {part!r} is not a number, range, list or *")
        if not lo <= a <= b <= hi:
            raise CronError(f"{name}: {part!r} must lie within {lo}-{hi}")
        values.update(range(a, b + 1, step))
    return values, text == "*"


def parse_cron(text: str) -> Cron:
    """Parse 'minute hour day month weekday'; CronError names the bad field."""
    if not isinstance(text, str):
        raise CronError("a cron string such as '0 13 * * 1-5' is required")
    parts = text.split()
    if len(parts) != 5:
        raise CronError(f"{text[:64]!r} needs 5 fields (minute hour day month weekday), got {len(parts)}")
    parsed = [_field(p, n, lo, hi) for p, (n, lo, hi) in zip(parts, FIELDS, strict=True)]
    weekdays = {d % 7 for d in parsed[4][0]}
    return Cron(
        text=" ".join(parts),
        minutes=tuple(sorted(parsed[0][0])),
        hours=tuple(sorted(parsed[1][0])),
        days=frozenset(parsed[2][0]),
        months=frozenset(parsed[3][0]),
        weekdays=frozenset(weekdays),
        any_day=parsed[2][1],
        any_weekday=parsed[4][1],
    )
