"""The periodic clean-up's transactions: lost runs, retries coming due, expired jobs.

Each is safe to run on several server replicas at once against one PostgreSQL database: rows
are taken with ``FOR UPDATE SKIP LOCKED`` and every change re-checks the state it acts on, so
two replicas never act on the same job twice, and running a sweep again changes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, exists, func, or_, select
from sqlalchemy.orm import Session, aliased, sessionmaker

from edgefleet.contract import FINISHED_JOB_STATES, JobState
from edgefleet.db.models import Job, JobEvent, JobLogChunk, Worker
from edgefleet.server.services import dispatch, lifecycle

log = logging.getLogger(__name__)

#: Jobs handled per transaction, so one sweep never holds many locks for long.
BATCH = 200


@dataclass(frozen=True)
class LostRun:
    job_id: int
    attempt: int
    worker: str | None
    queue: str
    requeued: bool


def requeue_lost(db: sessionmaker[Session], offline_timeout: float, now: datetime) -> list[LostRun]:
    """Runs whose worker has been silent past ``offline_timeout`` (no heartbeat and no claim,
    or it was removed) are lost: each is re-queued at once if it has retries left, else
    failed (or cancelled, if that was asked for). No job stays running on a worker that is
    gone."""
    cutoff = now - timedelta(seconds=offline_timeout)
    silent = or_(Worker.hostname.is_(None), Worker.last_heartbeat.is_(None))
    silent = or_(silent, Worker.last_heartbeat < cutoff)
    # A worker whose heartbeats are starved (a server or link under heavy load) but that
    # still claims jobs is alive: re-queueing its runs would only run them twice.
    claimed = aliased(Job)
    claiming = exists().where(
        claimed.worker_hostname == Job.worker_hostname, claimed.started_at > cutoff
    )
    lost: list[LostRun] = []
    while True:
        with db.begin() as session:
            jobs = session.scalars(
                select(Job)
                .outerjoin(Worker, Worker.hostname == Job.worker_hostname)
                .where(Job.state == JobState.RUNNING, silent, ~claiming)
                .order_by(Job.id)
                .limit(BATCH)
                .with_for_update(skip_locked=True, of=Job)
            ).all()
            for job in jobs:
                lost.append(_lose(session, job, offline_timeout, now))
        if len(jobs) < BATCH:
            return lost


def _lose(session: Session, job: Job, offline_timeout: float, now: datetime) -> LostRun:
    hostname, attempt = job.worker_hostname, job.attempt
    why = (
        f"worker {hostname} went offline (no heartbeat for {offline_timeout:g}s) "
        f"while running attempt {attempt}"
    )
    requeued = lifecycle.lose(session, job, why, now)
    log.warning("job %d: %s; %s", job.id, why, "re-queued" if requeued else job.state)
    return LostRun(job.id, attempt, hostname, job.queue, requeued)


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
        .where(Job.state == JobState.QUEUED, Job.queued_at <= queued_before, dispatch.due(now))
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
