"""A server's request to slow down (429 with ``Retry-After``), as its clients read it."""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime

#: A Retry-After that cannot be read: wait this long, as a server that said nothing useful.
DEFAULT_RETRY_AFTER = 1.0
#: Longest pause a client takes for one 429, whatever the header says.
MAX_RETRY_AFTER = 600.0


def retry_after_seconds(value: str | None, now: float | None = None) -> float:
    """Seconds to wait from a ``Retry-After`` header: delay-seconds or an HTTP date, clamped
    to ``[0, MAX_RETRY_AFTER]``; a missing or unreadable one is ``DEFAULT_RETRY_AFTER``."""
    if not value:
        return DEFAULT_RETRY_AFTER
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            return DEFAULT_RETRY_AFTER
        seconds = when - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return DEFAULT_RETRY_AFTER
    return min(MAX_RETRY_AFTER, max(0.0, seconds))
