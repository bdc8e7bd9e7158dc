"""Jobs: submission, the claim that hands them to workers, results and logs."""

from __future__ import annotations

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session, sessionmaker

from edgefleet.contract import (
    FINISHED_JOB_STATES,
    DesiredState,
    JobAssignment,
    JobRelease,
    JobResult,
    JobState,
    JobSubmit,
    JobView,
    LogChunk,
)
from edgefleet.db.models import Job, JobLogChunk, Worker
from edgefleet.db.types import utcnow
from edgefleet.errors import Conflict, InvalidRequest, NotFound
from edgefleet.server.services.workers import check_instance, desired_state, get_worker


def submit(db: sessionmaker[Session], request: JobSubmit) -> int:
    with db.begin() as session:
        job = Job(
            command=list(request.command),
            queue=request.queue,
            priority=request.priority,
            state=JobState.QUEUED,
            queued_at=utcnow(),
        )
        session.add(job)
        session.flush()
        return job.id


def claim(
    db: sessionmaker[Session], hostname: str, instance_id: str, free_slots: int
) -> tuple[list[JobAssignment], DesiredState]:
    """Hand queued jobs to a worker, never beyond its central concurrency.

    The worker row is locked first, so claims for one worker are serialised and the count of
    its running jobs cannot change underneath; other workers' claims skip rows locked here.
    """
    with db.begin() as session:
        worker = get_worker(session, hostname, lock=True)
        check_instance(worker, instance_id)
        desired = desired_state(worker)
        if desired.maintenance or desired.shutdown:
            return [], desired
        budget = min(free_slots, worker.concurrency - _slots_in_use(session, hostname))
        if budget <= 0:
            return [], desired
        candidates = session.scalars(
            select(Job)
            .where(Job.state == JobState.QUEUED, Job.queue.in_(worker.queues), Job.slots <= budget)
            .order_by(Job.priority.desc(), Job.id)
            .limit(budget)
            .with_for_update(skip_locked=True)
        ).all()
        now = utcnow()
        claimed: list[JobAssignment] = []
        for job in candidates:
            if job.slots > budget:
                continue
            budget -= job.slots
            job.state = JobState.RUNNING
            job.worker_hostname = hostname
            job.attempt += 1
            job.started_at = now
            job.finished_at = None
            job.exit_code = None
            job.reason = None
            claimed.append(
                JobAssignment(
                    id=job.id,
                    attempt=job.attempt,
                    command=job.command,
                    queue=job.queue,
                    slots=job.slots,
                )
            )
        return claimed, desired


def _slots_in_use(session: Session, hostname: str) -> int:
    return session.scalar(
        select(func.coalesce(func.sum(Job.slots), 0)).where(
            Job.worker_hostname == hostname, Job.state == JobState.RUNNING
        )
    )


def has_queued(db: sessionmaker[Session], queues: list[str], max_slots: int) -> bool:
    """Whether a queued job on ``queues`` would fit in ``max_slots`` free slots."""
    waiting = exists().where(
        Job.state == JobState.QUEUED, Job.queue.in_(queues), Job.slots <= max_slots
    )
    with db() as session:
        return bool(session.scalar(select(waiting)))


def _owned_job(session: Session, job_id: int, hostname: str, attempt: int) -> Job:
    job = session.get(Job, job_id, with_for_update=True)
    if job is None:
        raise NotFound(f"no job {job_id}")
    if job.worker_hostname != hostname or job.attempt != attempt:
        raise Conflict(f"job {job_id} attempt {attempt} is not held by worker {hostname!r}")
    return job


def report_result(db: sessionmaker[Session], job_id: int, hostname: str, result: JobResult) -> None:
    """Record how a job ended; a repeated report of the same result is a no-op."""
    if result.state not in FINISHED_JOB_STATES:
        raise InvalidRequest(f"a result must be one of {sorted(FINISHED_JOB_STATES)}")
    with db.begin() as session:
        worker = get_worker(session, hostname)
        check_instance(worker, result.instance_id)
        job = _owned_job(session, job_id, hostname, result.attempt)
        if job.state in FINISHED_JOB_STATES:
            if job.state == result.state and job.exit_code == result.exit_code:
                return
            raise Conflict(f"job {job_id} already ended as {job.state}")
        job.state = result.state
        job.exit_code = result.exit_code
        job.reason = result.reason
        job.finished_at = utcnow()


def release(db: sessionmaker[Session], job_id: int, hostname: str, request: JobRelease) -> str:
    """Put a claimed, never-started job back in its queue. Returns the queue for wake-ups."""
    with db.begin() as session:
        worker = get_worker(session, hostname)
        check_instance(worker, request.instance_id)
        job = _owned_job(session, job_id, hostname, request.attempt)
        if job.state != JobState.RUNNING:
            raise Conflict(f"job {job_id} is {job.state}, not running")
        job.state = JobState.QUEUED
        job.worker_hostname = None
        job.started_at = None
        job.attempt -= 1
        return job.queue


def push_log(db: sessionmaker[Session], job_id: int, hostname: str, chunk: LogChunk) -> None:
    with db.begin() as session:
        _owned_job(session, job_id, hostname, chunk.attempt)
        if session.get(JobLogChunk, (job_id, chunk.attempt, chunk.seq)) is None:
            session.add(
                JobLogChunk(
                    job_id=job_id,
                    attempt=chunk.attempt,
                    seq=chunk.seq,
                    data=chunk.data,
                    created_at=utcnow(),
                )
            )


def job_view(job: Job) -> JobView:
    return JobView(
        id=job.id,
        command=job.command,
        queue=job.queue,
        state=job.state,
        priority=job.priority,
        attempt=job.attempt,
        worker=job.worker_hostname,
        exit_code=job.exit_code,
        reason=job.reason,
        queued_at=job.queued_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
    )


def list_jobs(
    db: sessionmaker[Session], state: JobState | None, limit: int, offset: int
) -> list[JobView]:
    query = select(Job).order_by(Job.id).limit(limit).offset(offset)
    if state is not None:
        query = query.where(Job.state == state)
    with db() as session:
        return [job_view(job) for job in session.scalars(query)]


def get_job(db: sessionmaker[Session], job_id: int) -> JobView:
    with db() as session:
        job = session.get(Job, job_id)
        if job is None:
            raise NotFound(f"no job {job_id}")
        return job_view(job)


def job_log(db: sessionmaker[Session], job_id: int) -> str:
    with db() as session:
        if session.get(Job, job_id) is None:
            raise NotFound(f"no job {job_id}")
        chunks = session.scalars(
            select(JobLogChunk.data)
            .where(JobLogChunk.job_id == job_id)
            .order_by(JobLogChunk.attempt, JobLogChunk.seq)
        )
        return "".join(chunks)


def worker_queues(db: sessionmaker[Session], hostname: str) -> list[str]:
    with db() as session:
        worker: Worker = get_worker(session, hostname)
        return list(worker.queues)
