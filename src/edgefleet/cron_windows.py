"""Time windows from a cron expression: when a schedule's window is open, and when the next
one starts.

A window opens at each start the cron expression gives in its time zone and stays open for
a duration of elapsed time (``--for 8h`` is eight real hours, also across a change of
daylight saving time). When windows of one schedule overlap, the latest start is the one
that counts: the window stays open until that start's end.

Cron arithmetic (fields, day-of-week rules, starts inside a skipped or doubled hour) is
cronsim's, which follows Debian cron: a start in the hour skipped in spring runs at the
change, a start in the hour doubled in autumn runs once. Plain values in, plain values out:
the server and the CLI both use this.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

#: The fields of a cron expression here: minute hour day-of-month month day-of-week.
CRON_FIELDS = 5
#: Longest window a schedule may keep open after one start.
MAX_DURATION_SECONDS = 366 * 24 * 3600


@dataclass(frozen=True)
class Window:
    """One open window: from ``start`` (a cron start) to ``end``, both aware UTC."""

    start: datetime
    end: datetime


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name`` (``Europe/Berlin``, ``UTC``); ValueError if unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r}: give an IANA name such as UTC or Europe/Berlin"
        ) from None


def check_cron(expr: str) -> str:
    """``expr`` if it is a five-field cron expression cronsim reads; ValueError otherwise."""
    if len(expr.split()) != CRON_FIELDS:
        raise ValueError(
            f"bad cron expression {expr!r}: give five fields, minute hour day-of-month "
            "month day-of-week, e.g. '0 22 * * *'"
        )
    try:
        CronSim(expr, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as exc:
        raise ValueError(f"bad cron expression {expr!r}: {exc}") from None
    return expr


def check_duration(seconds: int, given: str | None = None) -> int:
    """``seconds`` if a window may last that long; the refusal names the duration as
    ``given`` (the operator's text), else in seconds."""
    if not 1 <= seconds <= MAX_DURATION_SECONDS:
        longest = MAX_DURATION_SECONDS // 86400
        shown = repr(given) if given is not None else f"{seconds}s"
        raise ValueError(f"bad duration {shown}: a window lasts from 1s to {longest}d")
    return seconds


def last_start(expr: str, tz: str, now: datetime) -> datetime | None:
    """The latest start at or before ``now`` (aware UTC), or None if there is none."""
    # A reverse walk from a time with microseconds includes that second itself.
    at = now.astimezone(zone(tz)).replace(microsecond=0) + timedelta(microseconds=1)
    try:
        return next(CronSim(expr, at, reverse=True)).astimezone(UTC)
    except StopIteration:
        return None


def next_start(expr: str, tz: str, now: datetime) -> datetime | None:
    """The first start after ``now`` (aware UTC), or None if there is none."""
    at = now.astimezone(zone(tz)).replace(microsecond=0)
    try:
        return next(CronSim(expr, at)).astimezone(UTC)
    except StopIteration:
        return None


def open_window(expr: str, tz: str, seconds: int, now: datetime) -> Window | None:
    """The window open at ``now``, or None: the latest start, if it is less than
    ``seconds`` ago."""
    start = last_start(expr, tz, now)
    if start is None:
        return None
    end = start + timedelta(seconds=seconds)
    return Window(start, end) if now < end else None


def next_boundary(expr: str, tz: str, seconds: int, now: datetime) -> datetime | None:
    """The next time after ``now`` at which this schedule's window opens, closes or starts
    again: the sooner of the next start and the open window's end."""
    times = [next_start(expr, tz, now)]
    window = open_window(expr, tz, seconds, now)
    if window is not None:
        times.append(window.end)
    return min((t for t in times if t is not None), default=None)
