"""Cron expressions: validation and next instants. 5 fields are minute-first, 6 are seconds-first."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

MACROS_REJECTED = "use 5 fields (minute first) or 6 fields (seconds first)"


def _fields(expr: str) -> list[str]:
    return expr.split()


def validate(expr: str) -> str | None:
    """None when valid, else a sentence saying what is wrong."""
    parts = _fields(expr)
    if len(parts) not in (5, 6):
        return f"a cron schedule has 5 or 6 fields, got {len(parts)}; {MACROS_REJECTED}"
    try:
        ok = croniter.is_valid(" ".join(parts), second_at_beginning=len(parts) == 6, strict=True)
    except Exception:
        ok = False
    if not ok:
        return "not a valid cron expression"
    try:  # expressions such as "0 0 31 2 *" parse but never fire
        next_instants(expr, "UTC", datetime(2026, 1, 1), 1)
    except Exception:
        return "this schedule never fires"
    return None


def validate_timezone(name: str) -> str | None:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return "not a known IANA time zone"
    return None


def next_instants(expr: str, tz: str, after: datetime, count: int, before: datetime | None = None) -> list[datetime]:
    """The next `count` fire instants strictly after `after` (and, given `before`, strictly before
    it: fewer then), as naive UTC.

    Evaluated on the wall clock of `tz`. On a fall-back day a wall-clock time that occurs twice
    fires once (the first occurrence); on a spring-forward day croniter's own rule applies.
    """
    parts = _fields(expr)
    zone = ZoneInfo(tz)
    start = after.replace(tzinfo=timezone.utc).astimezone(zone)
    it = croniter(" ".join(parts), start, second_at_beginning=len(parts) == 6)
    out: list[datetime] = []
    seen_wall: set[datetime] = set()
    guard = 0
    while len(out) < count:
        guard += 1
        if guard > count * 4 + 100:
            raise ValueError("schedule never fires")
        nxt: datetime = it.get_next(datetime)
        wall = nxt.replace(tzinfo=None)
        instant = nxt.astimezone(timezone.utc).replace(tzinfo=None)
        if instant <= after:
            continue
        if before is not None and instant >= before:
            break
        if wall in seen_wall or _is_second_occurrence(nxt, zone):
            continue
        seen_wall.add(wall)
        out.append(instant)
    return out


def _is_second_occurrence(moment: datetime, zone: ZoneInfo) -> bool:
    """True for the later of two instants that share one wall-clock time (DST fall-back)."""
    wall = moment.replace(tzinfo=None)
    first = wall.replace(fold=0, tzinfo=zone)
    second = wall.replace(fold=1, tzinfo=zone)
    if first.utcoffset() == second.utcoffset():
        return False
    return moment.astimezone(timezone.utc) == second.astimezone(timezone.utc)


@lru_cache(maxsize=8192)  # pure: a tick asks the same (schedule, zone, instant) for many workflows
def next_instant(expr: str, tz: str, after: datetime) -> datetime:
    return next_instants(expr, tz, after, 1)[0]


@lru_cache(maxsize=4096)
def describe(expr: str | None) -> str:
    """The schedule in words (cron-descriptor), cached: pages show the same few schedules often."""
    if not expr:
        return "Manual only"
    try:
        from cron_descriptor import Options, get_description
        opts = Options()
        opts.use_24hour_time_format = True
        return get_description(expr, opts)
    except Exception:
        return expr


__all__ = ["validate", "validate_timezone", "next_instants", "next_instant", "describe", "timedelta"]


@lru_cache(maxsize=8192)  # pure, as next_instant
def latest_at_or_before(expr: str, tz: str, when: datetime) -> datetime | None:
    """The last fire instant at or before `when` (naive UTC), within the last 400 days."""
    parts = _fields(expr)
    zone = ZoneInfo(tz)
    start = (when + timedelta(microseconds=1)).replace(tzinfo=timezone.utc).astimezone(zone)
    it = croniter(" ".join(parts), start, second_at_beginning=len(parts) == 6)
    for _ in range(8):
        prev: datetime = it.get_prev(datetime)
        instant = prev.astimezone(timezone.utc).replace(tzinfo=None)
        if when - instant > timedelta(days=400):
            return None
        if _is_second_occurrence(prev, zone):
            continue
        return instant
    return None
