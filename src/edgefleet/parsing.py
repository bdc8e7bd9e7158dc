"""Operator text to values: ``KEY=VALUE`` pairs (selectors, labels, env), queue lists,
durations and points in time.

The one place these are read, for the CLI and the server alike. Standard library only, so
the CLI can parse its options without loading the wire models. Every parser raises
``ValueError`` with a one-line message; each caller says which option or parameter it was
(a CLI usage error, a 400 from the server).

The name syntaxes here are also the wire contract's (``contract.LabelKey``,
``contract.QueueName``), so the CLI refuses exactly what the server would.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime, time, timedelta

#: A label key: letters, digits, ``_ . - /``, at most ``MAX_LABEL_KEY`` characters.
LABEL_KEY_PATTERN = r"^[A-Za-z0-9_.\-/]+$"
MAX_LABEL_KEY = 63
#: A queue name: letters, digits, ``_ . : -``.
QUEUE_NAME_PATTERN = r"^[A-Za-z0-9_.:\-]+$"
MAX_QUEUE_NAME = 255

_LABEL_KEY = re.compile(LABEL_KEY_PATTERN)
_QUEUE_NAME = re.compile(QUEUE_NAME_PATTERN)
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd]?)$")
#: ``1h30m``, ``2d12h``: whole-unit parts, largest unit first, each unit once.
_DURATION_PARTS = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_TIME_OF_DAY = re.compile(r"^(\d{1,2}):(\d{2})$")


def split_pair(item: str, *, strip: bool = True, secret: bool = False) -> tuple[str, str]:
    """``KEY=VALUE`` -> ``(KEY, VALUE)``; the value may be empty or hold more ``=``.

    ``strip`` trims blanks around key and value (labels, selectors; not env values).
    A ``secret`` item is never echoed back, not even in an error.
    """
    key, sep, value = item.partition("=")
    if strip:
        key, value = key.strip(), value.strip()
    if not sep or not key:
        shown = "a value" if secret else repr(item)
        raise ValueError(f"{shown} is not KEY=VALUE")
    return key, value


def parse_pairs(
    items: Iterable[str], *, strip: bool = True, secret: bool = False
) -> dict[str, str]:
    """Repeated ``KEY=VALUE`` items (``--env``, ``--label``); a later key wins."""
    return dict(split_pair(item, strip=strip, secret=secret) for item in items)


def split_list(text: str) -> list[str]:
    """``a, b,,c`` -> ``["a", "b", "c"]``: comma-separated, blanks dropped."""
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_selector(text: str) -> dict[str, str]:
    """``site=plant1,env=prod`` -> a dict of labels a worker must all have: each a valid
    label, each key once (two values for one key would quietly become the last one)."""
    items = split_list(text)
    if not items:
        raise ValueError("empty selector: give at least one KEY=VALUE label")
    selector: dict[str, str] = {}
    try:
        for item in items:
            ((key, value),) = parse_labels([item]).items()
            if key in selector:
                raise ValueError(f"{key!r} is given twice; a worker has one value per label")
            selector[key] = value
    except ValueError as exc:
        raise ValueError(f"bad selector: {exc}") from None
    return selector


def format_selector(selector: Mapping[str, str]) -> str:
    """The text ``parse_selector`` reads back."""
    return ",".join(f"{key}={value}" for key, value in selector.items())


def parse_labels(items: Iterable[str]) -> dict[str, str]:
    """Repeated ``KEY=VALUE`` worker labels, checked as the wire contract checks them."""
    labels: dict[str, str] = {}
    for item in items:
        key, value = split_pair(item)
        if len(key) > MAX_LABEL_KEY or not _LABEL_KEY.match(key):
            raise ValueError(
                f"bad label {item!r}: use KEY=VALUE with a key of letters, digits, '.', '_', "
                f"'-' or '/' (at most {MAX_LABEL_KEY})"
            )
        if _CONTROL_CHARS.search(value):
            raise ValueError(f"bad label {item!r}: the value holds control characters")
        labels[key] = value
    return labels


def parse_queues(text: str) -> list[str]:
    """``default,gpu`` -> queue names, in the order given; at least one."""
    queues = split_list(text)
    if not queues:
        raise ValueError("give at least one queue, e.g. -q default,gpu")
    for queue in queues:
        if len(queue) > MAX_QUEUE_NAME or not _QUEUE_NAME.match(queue):
            raise ValueError(f"bad queue name {queue!r}: use letters, digits, '_', '.', ':' or '-'")
    return queues


def parse_duration(text: str) -> float:
    """Seconds from ``90``, ``90s``, ``30m``, ``1.5h``, ``1d``, or parts such as ``1h30m``."""
    plain = text.strip().lower()
    match = _DURATION.match(plain)
    if match:
        return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    parts = _DURATION_PARTS.match(plain)
    if not plain or not parts or not any(parts.groups()):
        raise ValueError(f"bad duration {text!r}: use e.g. 30s, 15m, 2h, 1h30m or 1d")
    units = (86400, 3600, 60, 1)
    return float(sum(int(n) * unit for n, unit in zip(parts.groups(), units, strict=True) if n))


def parse_until(text: str, now: datetime) -> datetime:
    """A point in time after ``now`` (aware): ``HH:MM`` is the next such time of day in the
    local time zone, anything else an ISO 8601 date-time with its offset."""
    match = _TIME_OF_DAY.match(text.strip())
    if match:
        hour, minute = int(match.group(1)), int(match.group(2))
        if hour > 23 or minute > 59:
            raise ValueError(f"bad time of day {text!r}: use HH:MM from 00:00 to 23:59")
        local = now.astimezone()
        # Built as a naive local time and then placed in the zone, so a change of daylight
        # saving time between today and tomorrow gets tomorrow's offset.
        when = datetime.combine(local.date(), time(hour, minute)).astimezone()
        if when <= now:
            tomorrow = local.date() + timedelta(days=1)
            when = datetime.combine(tomorrow, time(hour, minute)).astimezone()
        return when
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"bad time {text!r}: use HH:MM or an ISO 8601 date-time with an offset, "
            "e.g. 2030-01-31T18:00+01:00"
        ) from None
    if when.tzinfo is None:
        raise ValueError(f"bad time {text!r}: give its offset, e.g. {text.strip()}+00:00")
    if when <= now:
        raise ValueError(f"{text!r} is in the past")
    return when
