"""Jobs as operators see them: submit, cancel, list, inspect (with history) and read logs.

The worker side (claims, results, log chunks) is in ``dispatch``; every state change goes
through ``lifecycle`` so the history is complete, and comes back with the wake-ups it calls
for (``events``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import Text, and_, cast, or_, select
from sqlalchemy.orm import Session, sessionmaker

from edgefleet import fleet_rules
from edgefleet.contract import (
    FINISHED_JOB_STATES,
    JobDetail,
    JobEventView,
    JobLogView,
    JobState,
    JobStatus,
    JobSubmit,
    JobView,
)
from edgefleet.db.models import Job, JobEvent, JobLogChunk, Worker
from edgefleet.db.session import Sessions
from edgefleet.db.types import utcnow
from edgefleet.errors import InvalidRequest, NotFound
from edgefleet.server.events import JobsQueued, Outcome
from edgefleet.server.secret_env import EnvSealer
from edgefleet.server.services import lifecycle
from edgefleet.server.services.policy import Capacity, waiting_reason
from edgefleet.server.services.workers import observed_state

#: For callers without settings at hand (the server passes its own).
DEFAULT_OFFLINE_TIMEOUT = 150.0


def submit(
    db: Sessions, request: JobSubmit, actor: str | None = None, sealer: EnvSealer | None = None
) -> int:
    return submit_many(db, [request], actor, sealer).value[0]


def submit_many(
    db: Sessions,
    requests: list[JobSubmit],
    actor: str | None = None,
    sealer: EnvSealer | None = None,
) -> Outcome[list[int]]:
    """Queue jobs in one transaction, in order: all of them or, on any error, none. Secret
    env values are sealed with ``sealer`` before they reach the database. Each queue wakes
    as many idle workers as jobs went there, with room for the smallest of them."""
    rows = [_new_job(r, sealer) for r in requests]
    with db.writer.begin() as connection:
        ids = lifecycle.submit(connection, rows, actor, utcnow())
    per_queue: dict[str, list[int]] = {}
    for request in requests:
        per_queue.setdefault(request.queue, []).append(request.slots)
    wake = tuple(JobsQueued(q, min(slots), count=len(slots)) for q, slots in per_queue.items())
    return Outcome(ids, wake)


def _new_job(request: JobSubmit, sealer: EnvSealer | None) -> dict:
    """What was asked for a new job (``lifecycle.submit`` queues it)."""
    secret_env: dict[str, str] = {}
    if request.secret_env:
        if sealer is None:
            raise ValueError("a job with secret env values needs a sealer to store them")
        secret_env = sealer.seal(request.secret_env)
    return {
        "command": list(request.command),
        "queue": request.queue,
        "priority": request.priority,
        "slots": request.slots,
        "retries": request.retries,
        "retry_delay": request.retry_delay,
        "timeout": request.timeout,
        "env": dict(request.env),
        "secret_env": secret_env,
        "cwd": request.cwd,
        "key": request.key,
    }


def cancel(db: sessionmaker[Session], job_id: int, actor: str) -> Outcome[JobView]:
    """Cancel a job: a queued one never starts; a running one is stopped by its worker, which
    is woken. Cancelling a cancelled job again changes nothing; a job that ended otherwise is
    refused (409)."""
    with db.begin() as session:
        job = session.get(Job, job_id, with_for_update=True)
        if job is None:
            raise NotFound(f"no job {job_id}")
        wake = lifecycle.cancel(session, job, actor, utcnow())
        session.flush()
        return Outcome(job_view(job), wake)


# --- views ------------------------------------------------------------------------------------


def job_view(job: Job, reason_for_wait: str | None = None) -> JobView:
    return JobView(
        id=job.id,
        command=job.command,
        queue=job.queue,
        state=job.state,
        priority=job.priority,
        slots=job.slots,
        attempt=job.attempt,
        max_attempts=job.retries + 1,
        retry_delay=job.retry_delay,
        timeout=job.timeout,
        env=dict(job.env or {}),
        secret_env_keys=sorted(job.secret_env or {}),
        cwd=job.cwd,
        worker=job.worker_hostname,
        exit_code=job.exit_code,
        reason=job.reason,
        waiting_reason=reason_for_wait,
        not_before=job.not_before,
        cancel_requested=job.cancel_requested_at is not None,
        log_truncated=job.log_truncated,
        queued_at=job.queued_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        key=job.key,
    )


def statuses(db: sessionmaker[Session], ids: list[int], keys: list[str]) -> list[JobStatus]:
    """The jobs named by id or by key, oldest first, in one query: a client polling thousands
    of its jobs asks once, not once per job. Unknown ids and keys are left out."""
    if not ids and not keys:
        return []
    with db() as session:
        found = session.scalars(
            select(Job).where(or_(Job.id.in_(ids), Job.key.in_(keys))).order_by(Job.id)
        )
        return [
            JobStatus(
                id=job.id,
                key=job.key,
                queue=job.queue,
                state=job.state,
                attempt=job.attempt,
                worker=job.worker_hostname,
                exit_code=job.exit_code,
                reason=job.reason,
                cancel_requested=job.cancel_requested_at is not None,
            )
            for job in found
        ]


def fleet_capacity(
    session: Session,
    offline_timeout: float,
    now: datetime,
    queues: Iterable[str] | None = None,
) -> list[Capacity]:
    """What each worker that may be live offers queued jobs right now; with ``queues``, only
    workers serving one of them. A worker silent past ``offline_timeout``, or revoked, offers
    nothing, so it is not read at all."""
    heard = Worker.last_heartbeat >= now - timedelta(seconds=offline_timeout)
    query = select(Worker).where(
        Worker.revoked_at.is_(None), or_(Worker.last_heartbeat.is_(None), heard)
    )
    if queues is not None:
        query = query.where(or_(*(_may_serve(queue) for queue in set(queues))))
    capacity = []
    for worker in session.scalars(query):
        state = observed_state(worker, now, offline_timeout)
        accepting = fleet_rules.observed_accepting(
            state,
            maintenance_requested=worker.maintenance_requested,
            shutdown_requested=worker.shutdown_requested,
        )
        queues, concurrency = frozenset(fleet_rules.queues(worker)), fleet_rules.concurrency(worker)
        live = fleet_rules.is_live(state)
        capacity.append(Capacity(worker.hostname, queues, concurrency, live, accepting))
    return capacity


def _may_serve(queue: str):
    """A worker whose queue lists (the operator's or its own) name ``queue``, as text: a queue
    name has no character JSON escapes, so ``"name"`` appears in the list exactly when the
    name is in it (checked again in Python, through ``fleet_rules.queues``)."""
    element = f'"{queue}"'
    return or_(
        cast(Worker.queues_override, Text).contains(element, autoescape=True),
        cast(Worker.flag_queues, Text).contains(element, autoescape=True),
    )


def _views(jobs: Iterable[Job], capacity: list[Capacity], now: datetime) -> list[JobView]:
    views = []
    for job in jobs:
        wait = None
        if job.state == JobState.QUEUED:
            wait = waiting_reason(
                job.queue,
                job.slots,
                job.not_before,
                now,
                capacity,
                next_attempt=job.attempt + 1,
                max_attempts=job.retries + 1,
            )
        views.append(job_view(job, wait))
    return views


def list_jobs(
    db: sessionmaker[Session],
    state: JobState | None,
    limit: int,
    offset: int,
    offline_timeout: float = DEFAULT_OFFLINE_TIMEOUT,
    queue: str | None = None,
    before: int | None = None,
) -> list[JobView]:
    """Newest first; ``before`` (the last id of a page) pages on to older jobs."""
    query = select(Job).order_by(Job.id.desc()).limit(limit).offset(offset)
    if before is not None:
        query = query.where(Job.id < before)
    if state is not None:
        query = query.where(Job.state == state)
    if queue is not None:
        query = query.where(Job.queue == queue)
    now = utcnow()
    with db() as session:
        jobs = session.scalars(query).all()
        waiting = {job.queue for job in jobs if _needs_capacity(job, now)}
        capacity = fleet_capacity(session, offline_timeout, now, waiting) if waiting else []
        return _views(jobs, capacity, now)


def _needs_capacity(job: Job, now: datetime) -> bool:
    """Whether why the job waits depends on the workers: it is queued and due."""
    return job.state == JobState.QUEUED and (job.not_before is None or job.not_before <= now)


def get_job(
    db: sessionmaker[Session], job_id: int, offline_timeout: float = DEFAULT_OFFLINE_TIMEOUT
) -> JobDetail:
    now = utcnow()
    with db() as session:
        job = session.get(Job, job_id)
        if job is None:
            raise NotFound(f"no job {job_id}")
        needed = _needs_capacity(job, now)
        capacity = fleet_capacity(session, offline_timeout, now, [job.queue]) if needed else []
        (view,) = _views([job], capacity, now)
        events = session.scalars(
            select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id)
        )
        history = [
            JobEventView(
                at=e.at,
                event=e.event,
                state=e.state,
                attempt=e.attempt,
                worker=e.worker_hostname,
                exit_code=e.exit_code,
                reason=e.reason,
                actor=e.actor,
            )
            for e in events
        ]
        return JobDetail(**view.model_dump(), history=history)


# --- logs -------------------------------------------------------------------------------------


def parse_cursor(cursor: str | None) -> tuple[int, int] | None:
    """``"ATTEMPT:SEQ"`` of the last chunk already read; empty or None for the start."""
    if not cursor:
        return None
    attempt, sep, seq = cursor.partition(":")
    if not sep or not _small_number(attempt) or not _small_number(seq):
        raise InvalidRequest(f"bad log cursor {cursor!r}: expected ATTEMPT:SEQ as returned before")
    return int(attempt), int(seq)


def _small_number(text: str) -> bool:
    """ASCII digits only (``"²".isdigit()`` holds too), and few enough for a column."""
    return text.isascii() and text.isdigit() and len(text) <= 10


def job_log(
    db: sessionmaker[Session], job_id: int, cursor: str | None = None, attempt: int | None = None
) -> JobLogView:
    """The job's output (all attempts in order, or one), optionally only after ``cursor``.

    The state is read before the chunks, so a reader that sees ``finished`` has every chunk
    stored before the job ended.
    """
    after = parse_cursor(cursor)
    with db() as session:
        job = session.get(Job, job_id)
        if job is None:
            raise NotFound(f"no job {job_id}")
        state = JobState(job.state)
        query = select(JobLogChunk).where(JobLogChunk.job_id == job_id)
        if attempt is not None:
            query = query.where(JobLogChunk.attempt == attempt)
        if after is not None:
            query = query.where(
                or_(
                    JobLogChunk.attempt > after[0],
                    and_(JobLogChunk.attempt == after[0], JobLogChunk.seq > after[1]),
                )
            )
        chunks = session.scalars(query.order_by(JobLogChunk.attempt, JobLogChunk.seq)).all()
    last = (chunks[-1].attempt, chunks[-1].seq) if chunks else after
    return JobLogView(
        id=job_id,
        log="".join(chunk.data for chunk in chunks),
        cursor=f"{last[0]}:{last[1]}" if last else "",
        state=state,
        finished=state in FINISHED_JOB_STATES,
    )
