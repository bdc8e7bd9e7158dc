"""The rules about a worker that the server and the worker both apply, each written once.

- **Effective settings**: an operator's override wins over the worker's own start-up flag
  until it is reset (or, for concurrency, until its expiry passes, when the layer below takes
  over: ``handed_back``). A worker's concurrency has standing layers between the two: worker
  override -> schedule -> label rule -> fleet default -> flag (``concurrency_source`` names
  the layer in force).
- **Standing rules**: which label rule applies to a worker (``matching_rules``), and how
  many per CPU a worker may be given (``cpu_refusal``).
- **Accepting work**: a worker takes new jobs only while it is neither in maintenance nor
  shutting down, and only into free slots; as the server sees it, also only while live.
- **Matching**: which workers a hostname glob and a label selector name.

Plain values in, plain values out: no database here, so the worker can use these too.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from edgefleet.contract import DesiredState, WorkerState
from edgefleet.errors import InvalidRequest

T = TypeVar("T")

# --- effective settings ------------------------------------------------------------------

#: ``source`` of a setting the worker's own flag decides.
FLAG = "flag"
#: ``source`` of a setting an operator set centrally.
OPERATOR = "operator"
#: ``source`` of a concurrency a standing label rule sets (``concurrency-rule set --selector``).
LABEL_RULE = "label-rule"
#: ``source`` of the fleet-wide default concurrency (``concurrency-rule set --default``).
FLEET_DEFAULT = "fleet-default"
#: ``source`` of a concurrency a schedule's open window sets (``schedule add``).
SCHEDULE = "schedule"


def effective(override: T | None, flag: T) -> T:
    """The value in force: the operator's override, else the worker's flag."""
    return flag if override is None else override


class WorkerSettings(Protocol):
    """A worker's flags and overrides: a ``Worker`` row, or a row of its desired columns."""

    flag_concurrency: int
    concurrency_override: int | None
    concurrency_override_until: datetime | None
    flag_queues: list[str]
    queues_override: list[str] | None
    #: The standing layer's value and its source (``label-rule``/``fleet-default``), or None.
    layer_concurrency: int | None
    layer_source: str | None


def concurrency_override(worker: WorkerSettings, now: datetime | None = None) -> int | None:
    """The operator's concurrency, or None once its expiry has passed: an override the sweep
    has not cleared yet is already gone for everyone who reads it."""
    until = worker.concurrency_override_until
    if until is not None and until <= (now or datetime.now(UTC)):
        return None
    return worker.concurrency_override


def concurrency_until(worker: WorkerSettings, now: datetime | None = None) -> datetime | None:
    """When the operator's concurrency in force ends by itself; None: it holds until reset."""
    if concurrency_override(worker, now) is None:
        return None
    return worker.concurrency_override_until


def concurrency(worker: WorkerSettings) -> int:
    """Worker override, else the standing layer (label rule, fleet default), else the flag."""
    return effective(concurrency_override(worker), concurrency_below(worker))


def concurrency_below(worker: WorkerSettings) -> int:
    """What the worker runs without an operator's value: the standing layer, else its flag."""
    return effective(worker.layer_concurrency, worker.flag_concurrency)


def source_below(worker: WorkerSettings) -> str:
    if worker.layer_concurrency is not None:
        return worker.layer_source or LABEL_RULE
    return FLAG


def handed_back(desired: DesiredState) -> DesiredState:
    """``desired`` once its operator's concurrency has ended: the layer below in force."""
    if desired.concurrency_after is None:
        return desired
    return desired.model_copy(
        update={
            "concurrency": desired.concurrency_after,
            "concurrency_source": desired.concurrency_after_source or FLAG,
            "concurrency_until": None,
            "concurrency_after": None,
            "concurrency_after_source": None,
        }
    )


def concurrency_source(worker: WorkerSettings) -> str:
    override = concurrency_override(worker)
    return source_below(worker) if override is None else OPERATOR


def queues(worker: WorkerSettings) -> list[str]:
    return list(effective(worker.queues_override, worker.flag_queues))


# --- standing rules --------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """A standing concurrency: for workers with every label of ``selector``, or for the whole
    fleet when it is empty (the fleet default). ``text`` names it (``site=plant1``)."""

    selector: Mapping[str, str]
    concurrency: int
    text: str = ""


def matching_rules(labels: Mapping[str, Any] | None, rules: Iterable[Rule]) -> list[Rule]:
    """The label rules a worker's labels match, the one in force first: most selector keys
    wins, and among as many keys the newest (``rules`` come newest first)."""
    found = [r for r in rules if r.selector and matches("", labels, None, r.selector)]
    return sorted(found, key=lambda rule: -len(rule.selector))  # stable: newest first


def cpu_refusal(
    hostname: str, sysinfo: Mapping[str, Any] | None, value: int, per_cpu: float
) -> str | None:
    """Why ``value`` is too much for a worker reporting ``sysinfo["cpus"]`` CPUs when at
    most ``per_cpu`` per CPU are allowed (a message), or None. 0 turns the check off, and a
    worker that reports no CPU count is not checked."""
    cpus = (sysinfo or {}).get("cpus")
    if per_cpu <= 0 or not isinstance(cpus, int) or isinstance(cpus, bool) or cpus < 1:
        return None
    limit = int(cpus * per_cpu)
    if value <= limit:
        return None
    return (
        f"concurrency {value} is beyond the limit for worker {hostname!r}: it reports {cpus} "
        f"CPUs and at most {per_cpu:g} per CPU ({limit}) are allowed "
        '(EDGEFLEET_MAX_CONCURRENCY_PER_CPU); use --force (API: "force": true) to set it anyway'
    )


# --- accepting work ----------------------------------------------------------------------

#: States in which the server has not heard a worker lately, or no longer listens to it.
NOT_LIVE = frozenset({WorkerState.OFFLINE, WorkerState.STOPPED, WorkerState.REVOKED})
#: Reported states in which a worker says it is in, or on its way to, maintenance.
MAINTENANCE_STATES = frozenset({WorkerState.MAINTENANCE, WorkerState.MAINTENANCE_PENDING})


def accepts_work(*, maintenance: bool, shutting_down: bool, free_slots: int = 1) -> bool:
    """Whether a worker takes new jobs: not in maintenance, not shutting down, a slot free."""
    return not maintenance and not shutting_down and free_slots > 0


def is_live(state: WorkerState) -> bool:
    """Heard from lately (``unknown`` still counts: it may only be late) and not revoked."""
    return state not in NOT_LIVE


def observed_accepting(
    state: WorkerState, *, maintenance_requested: bool, shutdown_requested: bool
) -> bool:
    """Whether the server may count on a worker for queued jobs: live, and neither asked to
    nor reporting that it is in maintenance or shutting down."""
    return is_live(state) and accepts_work(
        maintenance=maintenance_requested or state in MAINTENANCE_STATES,
        shutting_down=shutdown_requested or state == WorkerState.SHUTDOWN_PENDING,
    )


def slot_budget(free_slots: int, concurrency: int, in_use: int) -> int:
    """Slots a claim may fill: what the worker offers, within its effective concurrency."""
    return max(0, min(free_slots, concurrency - in_use))


# --- matching ----------------------------------------------------------------------------

GLOB_CHARS = frozenset("*?[")
_GLOB_ALLOWED = re.compile(r"^[A-Za-z0-9_.\-*?\[\]!]+$")


def is_glob(name: str) -> bool:
    return any(char in GLOB_CHARS for char in name)


def check_glob(pattern: str) -> None:
    """Refuse patterns that could never name a worker or whose brackets don't close."""
    if not _GLOB_ALLOWED.match(pattern):
        raise InvalidRequest(
            f"bad hostname pattern {pattern!r}: use letters, digits, '.', '-', '_' "
            "and the wildcards * ? [...]"
        )
    depth = 0
    for char in pattern:
        if char == "[":
            if depth:
                raise InvalidRequest(f"bad hostname pattern {pattern!r}: nested '['")
            depth = 1
        elif char == "]" and depth:
            depth = 0
    if depth:
        raise InvalidRequest(f"bad hostname pattern {pattern!r}: '[' is never closed")


def matches(
    hostname: str,
    labels: Mapping[str, Any] | None,
    pattern: str | None = None,
    selector: Mapping[str, str] | None = None,
) -> bool:
    """Whether a worker with this name and these labels is one a hostname ``pattern`` (a
    name or a glob) and a label ``selector`` (every label given, with that value) name;
    ``None`` matches any."""
    if pattern is not None and not fnmatch.fnmatchcase(hostname, pattern):
        return False
    given = labels or {}
    return all(given.get(key) == value for key, value in (selector or {}).items())
