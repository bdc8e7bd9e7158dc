"""What a change means for the workers waiting on the server, as typed values.

Services know whom a change concerns (the queue a job went back to, the worker whose desired
state or cancel orders moved), so they hand these back with their answer; routes and the
sweeper pass them on unread, and ``Notifier.announce`` is the one place they become
long-poll wake-ups.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from edgefleet.contract import ChangeSet, DesiredState

T = TypeVar("T")


@dataclass(frozen=True)
class JobsQueued:
    """Jobs came (back) to ``queue``: wake idle long-polls with room for ``slots``, as many
    as ``count`` (every one with room when None)."""

    queue: str
    slots: int = 1
    count: int | None = None


@dataclass(frozen=True)
class WorkerChanged:
    """A worker's desired state or its cancel orders changed: wake its own long-poll.
    ``desired``, when the change knows it, is the worker's new desired state: a long-poll
    held on this server answers with it without looking it up again."""

    hostname: str
    desired: DesiredState | None = field(default=None, compare=False)


Wake = JobsQueued | WorkerChanged


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """A service's answer and the wake-ups its change calls for."""

    value: T
    wake: tuple[Wake, ...] = ()


def changed_workers(changes: ChangeSet) -> tuple[WorkerChanged, ...]:
    """The workers a control change touched, each once, in name order."""
    return tuple(WorkerChanged(name) for name in sorted({c.hostname for c in changes.changes}))


def requeued(queues: Iterable[str]) -> tuple[JobsQueued, ...]:
    """Jobs handed back to these queues (one wake-up per queue, in name order)."""
    return tuple(JobsQueued(queue) for queue in sorted(set(queues)))
