"""The periodic clean-up's transactions: lost runs, retries coming due, operator overrides
that expired, expired jobs and audit entries.

Each is safe to run on several server replicas at once against one PostgreSQL database: rows
are taken with ``FOR UPDATE SKIP LOCKED`` and every change re-checks the state it acts on, so
two replicas never act on the same job twice, and running a sweep again changes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Select, delete, exists, func, or_, select, update
from sqlalchemy.orm import Session, aliased, sessionmaker

from edgefleet import fleet_rules
from edgefleet.contract import FINISHED_JOB_STATES, JobState
from edgefleet.db.models import AuditEntry, Job, JobEvent, JobLogChunk, Worker
from edgefleet.server.services import audit, lifecycle, liveness

log = logging.getLogger(__name__)

#: Jobs handled per transaction, so one sweep never holds many locks for long.
BATCH = 200
#: Who the audit log names for the changes the server makes by itself.
SERVER_ACTOR = "server"
EXPIRED_COMMENT = "override expired"


@dataclass(frozen=True)
class LostRun:
    job_id: int
    attempt: int
    worker: str | None
    queue: str
    requeued: bool


@dataclass(frozen=True)
class SilentWorker:
    hostname: str
    heartbeat_interval: float
    last_heartbeat: datetime | None


def requeue_lost(
    db: sessionmaker[Session],
    offline_timeout: float,
    now: datetime,
    watching_since: datetime | None = None,
) -> list[LostRun]:
    """Runs whose worker is offline by ``liveness``'s rule (silent for a few of its own
    heartbeat intervals, no claim since either) or was removed are lost: each is re-queued
    at once if it has retries left, else failed (or cancelled, if that was asked for). No job
    stays running on a worker that is gone.

    Silence is counted from ``watching_since`` at the earliest: a server that just started
    has not been there to hear the beats it missed."""
    lost: list[LostRun] = []
    for worker in offline_workers(db, offline_timeout, now, watching_since):
        lost += _lose_runs_of(db, worker, offline_timeout, now)
    return lost + _lose_orphans(db, now)


def offline_workers(
    db: sessionmaker[Session],
    offline_timeout: float,
    now: datetime,
    watching_since: datetime | None = None,
) -> list[SilentWorker]:
    """Workers with running jobs that are offline, without taking a lock: their few jobs
    are locked afterwards. Only workers silent for the shortest allowed silence are read at
    all, so a sweep of a healthy fleet reads little and locks nothing."""
    shortest = liveness.allowed_silence(0.0, offline_timeout)  # the floor, or the timeout
    running = exists().where(Job.worker_hostname == Worker.hostname, Job.state == JobState.RUNNING)
    query = select(Worker.hostname, Worker.heartbeat_interval, Worker.last_heartbeat).where(
        or_(
            Worker.last_heartbeat.is_(None),
            Worker.last_heartbeat < now - timedelta(seconds=shortest),
        ),
        running,
    )
    with db() as session:
        rows = session.execute(query.order_by(Worker.hostname)).all()
    offline = []
    for row in rows:
        last_seen = row.last_heartbeat
        if watching_since is not None and (last_seen is None or last_seen < watching_since):
            last_seen = watching_since
        if liveness.is_offline(last_seen, row.heartbeat_interval, now, offline_timeout):
            offline.append(SilentWorker(*row))
    return offline


def _lose_runs_of(
    db: sessionmaker[Session], worker: SilentWorker, offline_timeout: float, now: datetime
) -> list[LostRun]:
    allowed = liveness.allowed_silence(worker.heartbeat_interval, offline_timeout)
    cutoff = now - timedelta(seconds=allowed)
    # Checked again under the lock: a beat or a registration since makes it live.
    still_silent = exists().where(
        Worker.hostname == worker.hostname,
        or_(Worker.last_heartbeat.is_(None), Worker.last_heartbeat < cutoff),
    )
    # A worker whose heartbeats are starved (a server or link under heavy load) but that
    # still claims jobs is alive: re-queueing its runs would only run them twice.
    claimed = aliased(Job)
    claiming = exists().where(
        claimed.worker_hostname == worker.hostname, claimed.started_at > cutoff
    )
    why = (
        f"worker {worker.hostname} went offline "
        f"({liveness.describe(worker.last_heartbeat, worker.heartbeat_interval, now)})"
    )
    query = (
        select(Job)
        .where(Job.worker_hostname == worker.hostname, Job.state == JobState.RUNNING)
        .where(still_silent, ~claiming)
    )
    return _lose_in_batches(db, query, why, now)


def _lose_orphans(db: sessionmaker[Session], now: datetime) -> list[LostRun]:
    """Running jobs whose worker has no row (any more): nobody can report them."""
    known = exists().where(Worker.hostname == Job.worker_hostname)
    query = select(Job).where(Job.state == JobState.RUNNING, ~known)
    return _lose_in_batches(db, query, "its worker is unknown", now)


def _lose_in_batches(
    db: sessionmaker[Session], query: Select, why: str, now: datetime
) -> list[LostRun]:
    lost: list[LostRun] = []
    query = query.order_by(Job.id).limit(BATCH).with_for_update(skip_locked=True)
    while True:
        with db.begin() as session:
            jobs = session.scalars(query).all()
            for job in jobs:
                lost.append(_lose(session, job, why, now))
        if len(jobs) < BATCH:
            return lost


def _lose(session: Session, job: Job, why: str, now: datetime) -> LostRun:
    hostname, attempt = job.worker_hostname, job.attempt
    why = f"{why} while running attempt {attempt}"
    requeued = bool(lifecycle.lose(session, job, why, now))
    log.warning("job %d: %s; %s", job.id, why, "re-queued" if requeued else job.state)
    return LostRun(job.id, attempt, hostname, job.queue, requeued)


@dataclass(frozen=True)
class DueOverride:
    """An operator's concurrency whose expiry has passed, as read before clearing it."""

    hostname: str
    concurrency: int
    until: datetime


def due_overrides(db: sessionmaker[Session], now: datetime) -> list[DueOverride]:
    """Operator concurrencies whose expiry is ``now`` or earlier, read without a lock."""
    query = (
        select(Worker.hostname, Worker.concurrency_override, Worker.concurrency_override_until)
        .where(Worker.concurrency_override_until <= now, Worker.concurrency_override.is_not(None))
        .order_by(Worker.hostname)
    )
    with db() as session:
        return [DueOverride(*row) for row in session.execute(query)]


def expire_overrides(db: sessionmaker[Session], now: datetime) -> list[str]:
    """End the operator's concurrencies that are due: each worker falls back to the layer
    below, its desired version goes up and the audit log gets the server's own entry.
    Returns the workers changed, whose long-polls should hear of it."""
    return expire_due(db, due_overrides(db, now), now)


def expire_due(db: sessionmaker[Session], due: list[DueOverride], now: datetime) -> list[str]:
    """Clear each override read by ``due_overrides`` if it is still the same one: the
    UPDATE is guarded by the values read, so of two replicas sweeping at once (or an
    operator changing the worker in between) only one clears it, and only the rows it
    really updated are audited."""
    expired: list[str] = []
    for start in range(0, len(due), BATCH):
        with db.begin() as session:
            audit_rows = []
            for item in due[start : start + BATCH]:
                if not _clear_override(session, item):
                    continue
                worker = session.get(Worker, item.hostname)
                if worker is None:
                    continue
                audit_rows += _expiry_entries(item, worker, now)
                expired.append(item.hostname)
            audit.record(session, audit_rows)
    for hostname in expired:
        log.info("worker %s: operator's concurrency expired", hostname)
    return expired


def _clear_override(session: Session, item: DueOverride) -> bool:
    result = session.execute(
        update(Worker)
        .where(
            Worker.hostname == item.hostname,
            Worker.concurrency_override == item.concurrency,
            Worker.concurrency_override_until == item.until,
        )
        .values(
            concurrency_override=None,
            concurrency_override_until=None,
            desired_version=Worker.desired_version + 1,
        )
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def _expiry_entries(item: DueOverride, worker: Worker, now: datetime) -> list[dict[str, object]]:
    """The end written as the operator's change was: the concurrency, its source and its end,
    each from the override's to the layer below's."""
    moves = {
        "concurrency": (item.concurrency, fleet_rules.concurrency(worker)),
        "concurrency_source": (fleet_rules.OPERATOR, fleet_rules.concurrency_source(worker)),
        "concurrency_until": (item.until.isoformat(), None),
    }
    return [
        audit.entry(now, SERVER_ACTOR, item.hostname, field, old, new, EXPIRED_COMMENT)
        for field, (old, new) in moves.items()
    ]


def next_override_expiry(db: sessionmaker[Session]) -> datetime | None:
    """The soonest expiry of an operator's concurrency still to come (or overdue)."""
    query = select(func.min(Worker.concurrency_override_until)).where(
        Worker.concurrency_override.is_not(None)
    )
    with db() as session:
        return session.scalar(query)


def queues_due(db: sessionmaker[Session], since: datetime, now: datetime) -> list[str]:
    """Queues with a retry that came due in ``(since, now]``, so waiting workers hear of it."""
    with db() as session:
        return list(
            session.scalars(
                select(Job.queue)
                .distinct()
                .where(Job.state == JobState.QUEUED, Job.not_before > since, Job.not_before <= now)
            )
        )


def queues_waiting(
    db: sessionmaker[Session], queued_before: datetime, now: datetime
) -> dict[str, int]:
    """Queues holding due jobs queued before ``queued_before``, with the fewest slots such a
    job needs. A job is announced to a few idle workers only; if none of them took it, the
    others with room for it should look."""
    query = (
        select(Job.queue, func.min(Job.slots))
        .where(Job.state == JobState.QUEUED, Job.queued_at <= queued_before, lifecycle.due(now))
        .group_by(Job.queue)
    )
    with db() as session:
        return {queue: slots for queue, slots in session.execute(query)}


def purge_finished(db: sessionmaker[Session], retention: float, now: datetime) -> int:
    """Delete jobs (with their logs and history) that ended more than ``retention`` ago."""
    cutoff = now - timedelta(seconds=retention)
    purged = 0
    while True:
        with db.begin() as session:
            ids = session.scalars(
                select(Job.id)
                .where(Job.state.in_(FINISHED_JOB_STATES), Job.finished_at < cutoff)
                .order_by(Job.id)
                .limit(BATCH)
                .with_for_update(skip_locked=True)
            ).all()
            if ids:
                session.execute(delete(JobLogChunk).where(JobLogChunk.job_id.in_(ids)))
                session.execute(delete(JobEvent).where(JobEvent.job_id.in_(ids)))
                session.execute(delete(Job).where(Job.id.in_(ids)))
        purged += len(ids)
        if len(ids) < BATCH:
            return purged


def purge_audit(db: sessionmaker[Session], retention: float, now: datetime) -> int:
    """Delete audit entries written more than ``retention`` ago, oldest first.

    Entries are written in time order, so the expired ones are the lowest ids: each batch
    reads the oldest rows by primary key and stops at the first one still kept, which costs
    one short index read when nothing has expired (no index on the time is needed).
    """
    cutoff = now - timedelta(seconds=retention)
    purged = 0
    while True:
        with db.begin() as session:
            rows = session.execute(
                select(AuditEntry.id, AuditEntry.at)
                .order_by(AuditEntry.id)
                .limit(BATCH)
                .with_for_update(skip_locked=True)
            ).all()
            expired = []
            for entry_id, at in rows:
                if at >= cutoff:
                    break
                expired.append(entry_id)
            if expired:
                session.execute(delete(AuditEntry).where(AuditEntry.id.in_(expired)))
        purged += len(expired)
        if len(expired) < BATCH:
            return purged
