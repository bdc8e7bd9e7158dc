"""Queue caps: at most N jobs of a queue run at once, across the whole fleet.

A cap is one row of ``edge_queue_cap``; a queue without a row (or with ``None``) is uncapped
and costs a claim one look at that small table, nothing more. A claim that could take jobs
of capped queues locks their cap rows (``FOR UPDATE``, in name order) before it counts their
running jobs, so claims for one capped queue are serialised across workers and replicas
alike (SQLite serialises every writer anyway); claims that touch no capped queue take no
such lock. Lowering a cap stops no job: new ones wait until fewer than the cap run.

A place freed under a cap (a run ended, a cap was raised or lifted) wakes the long-polls of
the workers waiting on that queue (``JobsQueued``), so the next job starts at once.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence

from sqlalchemy import Connection, bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from edgefleet.contract import JobState, QueueCapChange, QueueCapRequest
from edgefleet.db.models import AuditEntry, Job, QueueCap
from edgefleet.db.types import utcnow
from edgefleet.server.events import JobsQueued, Outcome

#: The audit field of a cap change; its target is ``queue:<name>``.
AUDIT_FIELD = "queue_concurrency"
AUDIT_TARGET_PREFIX = "queue:"

_cap, _job = QueueCap.__table__, Job.__table__
_QUEUES = bindparam("queues", expanding=True)
_CAPPED = _cap.c.concurrency.is_not(None)
_RUNNING_OF_QUEUE = (
    select(func.count())
    .where(_job.c.state == JobState.RUNNING.value, _job.c.queue == _cap.c.queue)
    .scalar_subquery()
)
#: The capped ones among a worker's queues, locked in name order (claims never deadlock).
_LOCK_CAPS = (
    select(_cap.c.queue, _cap.c.concurrency)
    .where(_cap.c.queue.in_(_QUEUES), _CAPPED)
    .order_by(_cap.c.queue)
    .with_for_update()
)
#: Running jobs per queue. A statement of its own, after the lock: on PostgreSQL it then
#: reads a snapshot taken once the previous holder committed its claim.
_RUNNING_IN = (
    select(_job.c.queue, func.count())
    .where(_job.c.state == JobState.RUNNING.value, _job.c.queue.in_(_QUEUES))
    .group_by(_job.c.queue)
)
#: The capped ones among ``queues`` that are full (no lock: the long-poll's look).
_FULL = select(_cap.c.queue).where(
    _cap.c.queue.in_(_QUEUES), _CAPPED, _cap.c.concurrency <= _RUNNING_OF_QUEUE
)
#: Capped queues among the jobs ``ids``, with how many of those jobs each holds.
_CAPPED_JOBS = (
    select(_job.c.queue, func.count())
    .join(_cap, _cap.c.queue == _job.c.queue)
    .where(_job.c.id.in_(bindparam("ids", expanding=True)), _CAPPED)
    .group_by(_job.c.queue)
)


def lock_room(connection: Connection, queues: Sequence[str]) -> dict[str, int]:
    """For a claim: how many more jobs each capped queue among ``queues`` may start now
    (0 when full), its cap row locked until the claim commits. Empty when none is capped."""
    if not queues:
        return {}
    capped = dict(connection.execute(_LOCK_CAPS, {"queues": list(queues)}).all())
    if not capped:
        return {}
    running = dict(connection.execute(_RUNNING_IN, {"queues": list(capped)}).all())
    return {queue: max(0, cap - running.get(queue, 0)) for queue, cap in capped.items()}


def open_queues(db: Session | Connection, queues: Sequence[str]) -> list[str]:
    """``queues`` without the capped ones that are full: where a new job could start now."""
    if not queues:
        return []
    full = set(db.scalars(_FULL, {"queues": list(queues)}))
    return [queue for queue in queues if queue not in full]


def freed(db: Session | Connection, job_ids: Iterable[int]) -> tuple[JobsQueued, ...]:
    """Wake-ups for the capped queues of these jobs, whose runs just ended: as many waiting
    workers as places were freed in each."""
    ids = list(job_ids)
    if not ids:
        return ()
    rows = db.execute(_CAPPED_JOBS, {"ids": ids}).all()
    return tuple(JobsQueued(queue, count=count) for queue, count in sorted(rows))


def freed_in(db: Session | Connection, queues: Iterable[str]) -> tuple[JobsQueued, ...]:
    """Wake-ups for the capped ones of ``queues``, one run ended in each."""
    counts = Counter(queues)
    if not counts:
        return ()
    query = select(_cap.c.queue).where(_cap.c.queue.in_(_QUEUES), _CAPPED)
    capped = sorted(db.scalars(query, {"queues": list(counts)}))
    return tuple(JobsQueued(queue, count=counts[queue]) for queue in capped)


def caps(db: Session | Connection) -> dict[str, int]:
    """Every cap in force, by queue."""
    return dict(db.execute(select(_cap.c.queue, _cap.c.concurrency).where(_CAPPED)).all())


def set_cap(
    db: sessionmaker[Session], queue: str, request: QueueCapRequest, actor: str
) -> Outcome[QueueCapChange]:
    """Set or lift ``queue``'s cap, audited (target ``queue:<name>``); a cap that grew or
    went away wakes the workers waiting on the queue. The same value again changes nothing."""
    new = None if request.reset else request.concurrency
    with db.begin() as session:
        old = _lock_cap(session, queue)
        if old == new:
            return Outcome(QueueCapChange(queue=queue, old=old, new=new, changed=False))
        session.execute(update(_cap).where(_cap.c.queue == queue).values(concurrency=new))
        session.add(
            AuditEntry(
                at=utcnow(),
                actor=actor,
                target=f"{AUDIT_TARGET_PREFIX}{queue}",
                field=AUDIT_FIELD,
                old_value=None if old is None else json.dumps(old),
                new_value=None if new is None else json.dumps(new),
                comment=None,
            )
        )
    change = QueueCapChange(queue=queue, old=old, new=new, changed=True)
    return Outcome(change, _raised(queue, old, new))


def _lock_cap(session: Session, queue: str) -> int | None:
    """The queue's cap row, made if missing and locked: two changes of one queue at once
    are serialised, and the second sees the first's value as its old one."""
    lock = select(_cap.c.concurrency).where(_cap.c.queue == queue).with_for_update()
    row = session.execute(lock).one_or_none()
    if row is None:
        try:  # another change may insert it first: then lock theirs
            with session.begin_nested():
                session.execute(insert(_cap).values(queue=queue, concurrency=None))
        except IntegrityError:
            pass
        row = session.execute(lock).one()
    return row.concurrency


def _raised(queue: str, old: int | None, new: int | None) -> tuple[JobsQueued, ...]:
    if new is None:
        return (JobsQueued(queue),)
    if old is not None and new > old:
        return (JobsQueued(queue, count=new - old),)
    return ()
