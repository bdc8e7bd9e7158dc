"""Pure job policy: when a failed attempt is retried, and why a queued job is still waiting.

No database here, so the rules can be read and tested on their own.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

#: Longest delay between two attempts, however many retries came before.
MAX_RETRY_DELAY = 3600.0
#: Retry delays are spread by this fraction either way, so jobs that failed together (for
#: example when their worker died) do not all come back at the same instant.
RETRY_JITTER = 0.1


def retry_delay(
    retry: int,
    base: float,
    cap: float = MAX_RETRY_DELAY,
    uniform: Callable[[float, float], float] = random.uniform,
) -> float:
    """Seconds before retry number ``retry`` (1 for the first): ``base`` doubled per retry.

    >>> retry_delay(3, 10.0, uniform=lambda a, b: 1.0)
    40.0
    """
    if retry < 1:
        raise ValueError("retries are counted from 1")
    if base <= 0:
        return 0.0
    delay = min(cap, base * 2 ** min(retry - 1, 62))
    return min(cap, delay * uniform(1 - RETRY_JITTER, 1 + RETRY_JITTER))


@dataclass(frozen=True)
class RetryDecision:
    retry: bool
    #: Seconds until the next attempt is due (0 when not retried).
    delay: float = 0.0
    note: str = ""


def after_failure(
    attempt: int,
    retries: int,
    base_delay: float,
    *,
    immediate: bool = False,
    uniform: Callable[[float, float], float] = random.uniform,
) -> RetryDecision:
    """What follows failed (or lost) attempt number ``attempt`` of a job allowing ``retries``.

    ``immediate`` is for attempts lost through no fault of the job (its worker died or was
    cut off): they come back at once, but still count, so a job that kills its worker every
    time cannot loop for ever.
    """
    allowed = retries + 1
    if attempt >= allowed:
        if retries == 0:
            return RetryDecision(False)
        return RetryDecision(False, note=f"no retries left ({attempt} of {allowed} attempts)")
    delay = 0.0 if immediate else retry_delay(attempt, base_delay, uniform=uniform)
    when = "at once" if delay == 0 else f"in {delay:.3g}s"
    return RetryDecision(True, delay, f"retrying {when} (attempt {attempt + 1} of {allowed})")


@dataclass(frozen=True)
class Capacity:
    """What one worker offers right now, as far as queued jobs are concerned."""

    hostname: str
    queues: frozenset[str]
    concurrency: int
    live: bool  #: ``fleet_rules.is_live``: heard from lately (unknown counts) and not revoked
    accepting: bool  #: ``fleet_rules.observed_accepting``


def waiting_reason(
    queue: str,
    slots: int,
    not_before: datetime | None,
    now: datetime,
    workers: Iterable[Capacity],
    next_attempt: int = 1,
    max_attempts: int = 1,
) -> str | None:
    """Why a queued job is not running, if it is more than waiting for a free slot.

    None means it can run as soon as a worker serving its queue has ``slots`` free.
    """
    if not_before is not None and not_before > now:
        return (
            f"attempt {next_attempt} of {max_attempts} is due at {not_before:%Y-%m-%d %H:%M:%S} UTC"
        )
    serving = [w for w in workers if queue in w.queues and w.live]
    if not serving:
        return f"no live worker serves queue {queue!r}"
    accepting = [w for w in serving if w.accepting]
    if not accepting:
        return f"every live worker serving queue {queue!r} is in maintenance or shutting down"
    largest = max(w.concurrency for w in accepting)
    if slots > largest:
        return (
            f"needs {slots} slots, but the largest live worker serving queue {queue!r} "
            f"offers {largest}"
        )
    return None
