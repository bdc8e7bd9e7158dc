"""Queue caps: at most N jobs of a queue run at once, across the whole fleet.

A cap is one row of ``edge_queue_cap``; a queue without a row (or with ``None``) is uncapped.
On SQLite, whose writers take turns anyway, caps cost no statement of their own: they are
read inside the statements the hot paths make anyway. A claim reads the caps of its worker's
queues with its slots in use, locking their rows (``FOR UPDATE``, in name order), and counts
a capped queue's running jobs in its read of that queue's candidates, a statement after the
lock (under a bound cap, likely full, in a count of its own first, so a full one costs no
read of candidates); so claims for one capped queue are serialised across workers and
replicas alike, and claims that touch no capped queue take no such lock.

Where claims run side by side (PostgreSQL), a lock held from the claim's first read to its
commit queued every worker's claims of the queue behind one another's whole claims, each
several round trips to a busy server: most of the server's database threads waited on it,
and a cap that never bound cost up to a third of the throughput. So there a claim whose caps
are not bound locks them late (``lock_late``): it reads them unlocked, takes and starts its
jobs as it would without caps (each capped queue's room estimated from an unlocked count),
and as its last act sends, in one round trip, the lock of the caps of the queues it started
jobs of, a statement of its own that counts their running jobs (its snapshot sees whatever
the lock's previous holder committed, and its own starts) and the commit. A count over a cap
aborts the transaction (``Overrun``), and the claim is made again the first way; a bound
cap (likely full) is locked first at once. The lock is held only while the database runs
those two statements and the commit, and no claim commits a start under a cap without
holding it, so the count each claim checks is exact.

A place freed under a cap (a run ended, a cap was raised or lifted) wakes the long-polls of
the workers waiting on that queue (``JobsQueued``), so the next job starts at once. A run
that ends wakes anyone only while the cap is ``bound``: a claim found it full (or it was set
at or below what runs), and no claim found room to spare since (which means that claim
took every job of the queue it could: nobody waits for one). A cap that never binds thus
costs no wake-ups, no writes and no counting of running jobs outside claims.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import (
    Connection,
    Row,
    ScalarSelect,
    Select,
    bindparam,
    func,
    insert,
    select,
    true,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from edgefleet.contract import JobState, QueueCapChange, QueueCapRequest
from edgefleet.db.models import Job, QueueCap
from edgefleet.db.types import utcnow
from edgefleet.server.events import JobsQueued, Outcome
from edgefleet.server.services import audit

#: The audit field of a cap change; its target is ``queue:<name>``.
AUDIT_FIELD = "queue_concurrency"
AUDIT_TARGET_PREFIX = "queue:"

_cap, _job = QueueCap.__table__, Job.__table__
_QUEUES = bindparam("queues", expanding=True)
_CAPPED = _cap.c.concurrency.is_not(None)
_counted = _job.alias("counted")


def running_of(queue) -> ScalarSelect:
    """How many jobs of ``queue`` (a column or a parameter) run now."""
    return (
        select(func.count())
        .select_from(_counted)
        .where(_counted.c.state == JobState.RUNNING.value, _counted.c.queue == queue)
        .scalar_subquery()
    )


#: The capped ones among a worker's queues, locked in name order (claims never deadlock)
#: until the claim commits; a claim reads them in the statement it reads its slots with.
_LOCKED = (
    select(_cap.c.queue, _cap.c.concurrency, _cap.c.bound)
    .where(_cap.c.queue.in_(_QUEUES), _CAPPED)
    .order_by(_cap.c.queue)
    .with_for_update()
    .cte("locked_cap")
)
_SET_BOUND = (
    update(_cap).where(_cap.c.queue == bindparam("capped")).values(bound=bindparam("is_bound"))
)
#: For a run that ends: its queue if its cap is bound (someone waits for the place), else NULL.
BOUND_QUEUE = (
    select(_cap.c.queue)
    .where(_cap.c.queue == _job.c.queue, _CAPPED, _cap.c.bound)
    .scalar_subquery()
    .label("bound_queue")
)


#: The same, unlocked: for a claim that locks its caps late (``lock_late``).
_READ = (
    select(_cap.c.queue, _cap.c.concurrency, _cap.c.bound)
    .where(_cap.c.queue.in_(_QUEUES), _CAPPED)
    .cte("read_cap")
)


def with_locked_caps(slots_in_use: ScalarSelect, lock: bool = True) -> Select:
    """A claim's first read: its worker's slots in use (``in_use``) beside the caps of its
    queues (``queue``, ``concurrency``, ``bound``; one row of NULLs when none is capped),
    their rows locked unless ``lock`` is false. One statement: an uncapped claim costs no
    look at caps of its own. Running jobs are counted later, by the claim's reads of
    candidates: on PostgreSQL a statement after the lock sees what the previous holder's
    claim started."""
    in_use = select(slots_in_use.label("in_use")).subquery("in_use")
    capped = _LOCKED if lock else _READ
    columns = (capped.c.queue, capped.c.concurrency, capped.c.bound)
    return select(in_use.c.in_use, *columns).select_from(in_use.outerjoin(capped, true()))


#: The caps among ``queues`` as they are now, locked in name order: a claim's late lock, or
#: the early one of a claim that read its caps unlocked and found one bound.
LOCK = (
    select(_cap.c.queue, _cap.c.concurrency, _cap.c.bound)
    .where(_cap.c.queue.in_(_QUEUES), _CAPPED)
    .order_by(_cap.c.queue)
    .with_for_update()
)
#: A claim's late lock, then its check: a statement of its own, whose snapshot sees what the
#: lock's previous holder committed. The check marks the caps the claim left full bound, and
#: divides by zero (aborting the transaction) if one was passed.
_LATE_LOCK = (
    "SELECT 1 FROM edge_queue_cap"
    " WHERE queue = ANY(%(queues)s) AND concurrency IS NOT NULL ORDER BY queue FOR UPDATE"
)
_LATE_CHECK = """
WITH counted AS (
    SELECT cap.queue, cap.concurrency, cap.bound, (
        SELECT count(*) FROM edge_job AS job WHERE job.state = %(running)s AND job.queue = cap.queue
    ) AS running
    FROM edge_queue_cap AS cap WHERE cap.queue = ANY(%(queues)s) AND cap.concurrency IS NOT NULL
), filled AS (
    UPDATE edge_queue_cap AS cap SET bound = true FROM counted
    WHERE cap.queue = counted.queue AND NOT counted.bound
        AND counted.running >= counted.concurrency
)
SELECT sum(1 / (running <= concurrency)::integer) FROM counted
"""


def _commit_checked(connection: Connection, queues: list[str]) -> None:
    """Lock, check and commit in one round trip (psycopg's pipeline): the lock is held for
    no wait on this server's threads. A passed cap aborts the transaction, so the COMMIT
    behind it commits nothing."""
    from psycopg.errors import DivisionByZero  # PostgreSQL only: SQLite servers never load it

    driver = connection.connection.driver_connection
    params = {"queues": queues, "running": JobState.RUNNING.value}
    try:
        with driver.pipeline():
            driver.execute(_LATE_LOCK, params)
            driver.execute(_LATE_CHECK, params)
            driver.execute("COMMIT")
    except DivisionByZero as passed:
        raise Overrun(", ".join(queues)) from passed


def lock_late(connection: Connection) -> bool:
    """Whether a claim on this database should lock unbound caps only after it has started
    its jobs: where claims run side by side (not SQLite, whose writers take turns anyway)."""
    return connection.dialect.name != "sqlite"


class Overrun(Exception):
    """A claim that locked its caps late found it started more than a cap allows: rolled
    back, it is made again with its caps locked first."""


def commit_late(connection: Connection, capped: dict[str, Cap], taken: Iterable[str]) -> None:
    """For a claim that has started its jobs without its caps locked, as its last act: lock
    the caps of the capped queues it took jobs of, count their running jobs (its own starts
    included) and commit, or raise ``Overrun`` (nothing committed) if any passed its cap. A
    cap it left full is marked bound, so the long-poll's look and the next claims see it is
    (as ``note_bound`` would). Caps of queues it took no job of it leaves alone: it cannot
    have filled them."""
    queues = sorted({queue for queue in taken if queue in capped})
    if queues:
        _commit_checked(connection, queues)


@dataclass(frozen=True)
class Cap:
    """A capped queue's row as a claim locked it."""

    concurrency: int
    bound: bool


def locked(rows: Sequence[Row]) -> dict[str, Cap]:
    """The caps a ``with_locked_caps`` read found, by queue."""
    return {row.queue: Cap(row.concurrency, row.bound) for row in rows if row.queue is not None}


class Room(dict[str, int]):
    """For a claim: places left per capped queue whose running jobs it counted, and which
    of its caps were bound."""

    def __init__(self, places: dict[str, int] | None = None, bound: set[str] | None = None):
        super().__init__(places or {})
        self.bound = bound or set()


def note_bound(connection: Connection, room: Room, taken: Iterable[str], worker_full: bool) -> None:
    """After a claim, its cap rows still locked: a cap it left full is ``bound``; one it
    left room under although its worker had slots to spare (so it took every job of the
    queue it could) no longer is. Written only when that changes; a capped queue the claim
    found no job of (so counted nothing) is left as it was. Only a claim starts jobs, so a
    full cap is always bound (``set_cap`` binds one set at or below what runs): the
    long-poll's look counts running jobs only under bound caps."""
    counts = Counter(taken)
    for queue, places in room.items():
        was = queue in room.bound
        if places - counts[queue] <= 0:
            bound = True
        elif not worker_full:
            bound = False
        else:  # the worker's slots, not the cap, ended this claim: nothing learnt
            bound = was
        if bound != was:
            connection.execute(_SET_BOUND, {"capped": queue, "is_bound": bound})


#: For a long-poll's look (``dispatch``): the full caps among ``queues``, under which no
#: job may start. Only a bound cap can be full (see ``note_bound`` and ``set_cap``), so a cap
#: that does not bind costs the look no count of running jobs.
FULL_AMONG = select(_cap.c.queue).where(
    _cap.c.queue.in_(_QUEUES),
    _CAPPED,
    _cap.c.bound,
    _cap.c.concurrency <= running_of(_cap.c.queue),
)


def freed(runs: Iterable[Row]) -> tuple[JobsQueued, ...]:
    """Wake-ups for the runs that just ended under bound caps (their ``bound_queue``, read
    with ``BOUND_QUEUE``): as many waiting workers as places were freed in each."""
    counts = Counter(run.bound_queue for run in runs if run.bound_queue is not None)
    return tuple(JobsQueued(queue, count=counts[queue]) for queue in sorted(counts))


def freed_in(db: Session | Connection, queues: Iterable[str]) -> tuple[JobsQueued, ...]:
    """Wake-ups for the bound caps among ``queues``, one run ended in each."""
    counts = Counter(queues)
    if not counts:
        return ()
    query = select(_cap.c.queue).where(_cap.c.queue.in_(_QUEUES), _CAPPED, _cap.c.bound)
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
        bound = new is not None and session.scalar(select(running_of(queue))) >= new
        session.execute(
            update(_cap).where(_cap.c.queue == queue).values(concurrency=new, bound=bound)
        )
        row = audit.entry(utcnow(), actor, f"{AUDIT_TARGET_PREFIX}{queue}", AUDIT_FIELD, old, new)
        audit.record(session, [row])
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
