"""When a silent worker counts as offline: the one rule, for the sweep and for the views.

A worker tells the server how often it beats (``Registration.heartbeat_interval``), so the
server can judge it by its own rhythm: it is offline once it has missed ``MISSED_BEATS``
of its beats, but never sooner than ``FLOOR`` seconds (a loaded server or link delays
beats by a few seconds) and never later than ``EDGEFLEET_WORKER_OFFLINE_TIMEOUT``. A
worker beating every 2 s is offline after 10 s of silence, one beating every 30 s after
150 s.
"""

from __future__ import annotations

from datetime import datetime

#: Beats a worker may miss before it counts as offline.
MISSED_BEATS = 5
#: Shortest silence that makes a worker offline, whatever its interval (unless the offline
#: timeout is shorter still).
FLOOR = 10.0


def allowed_silence(heartbeat_interval: float, offline_timeout: float) -> float:
    """Seconds without a sign of life after which a worker beating every
    ``heartbeat_interval`` seconds is offline."""
    return min(offline_timeout, max(FLOOR, MISSED_BEATS * heartbeat_interval))


def unknown_after(heartbeat_interval: float) -> float:
    """Seconds of silence after which a worker's reported state is no longer trusted (shown
    as ``unknown``) though it is not offline yet."""
    return max(3 * heartbeat_interval, heartbeat_interval + 5)


def silence(last_seen: datetime | None, now: datetime) -> float:
    """Seconds since ``last_seen``; a worker never seen is silent for ever."""
    return float("inf") if last_seen is None else (now - last_seen).total_seconds()


def is_offline(
    last_seen: datetime | None, heartbeat_interval: float, now: datetime, offline_timeout: float
) -> bool:
    return silence(last_seen, now) > allowed_silence(heartbeat_interval, offline_timeout)


def describe(last_seen: datetime | None, heartbeat_interval: float, now: datetime) -> str:
    """The silence in words, for the reason of a lost run."""
    quiet = silence(last_seen, now)
    heard = "never heard from" if quiet == float("inf") else f"no heartbeat for {quiet:.0f}s"
    return f"{heard}, beating every {heartbeat_interval:g}s"
