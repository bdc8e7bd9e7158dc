"""Every change of a job's state, each written with its history event in the same transaction.

These helpers work inside a caller's transaction on a job row the caller has locked; the
services around them (``jobs``, ``dispatch``, ``sweep``, worker registration) own the
transactions. Keeping all transitions here means the history can never miss one.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from edgefleet.contract import JobState
from edgefleet.db.models import Job, JobEvent
from edgefleet.server.services.policy import after_failure

#: History events that record how an attempt ended (what makes a report a duplicate).
RESULT_EVENTS = frozenset({"succeeded", "failed", "cancelled"})


def record(
    session: Session,
    job: Job,
    event: str,
    now: datetime,
    *,
    attempt: int | None = None,
    worker: str | None = None,
    exit_code: int | None = None,
    reason: str | None = None,
    actor: str | None = None,
) -> None:
    session.add(
        JobEvent(
            job_id=job.id,
            at=now,
            event=event,
            state=job.state,
            attempt=job.attempt if attempt is None else attempt,
            worker_hostname=worker if worker is not None else job.worker_hostname,
            exit_code=exit_code,
            reason=reason,
            actor=actor,
        )
    )


def release(session: Session, job: Job, now: datetime) -> bool:
    """A claimed job handed back unstarted: the attempt is given back too. True if it was
    queued again; a job whose cancel was asked for ends cancelled instead (it never starts)."""
    hostname = job.worker_hostname
    job.worker_hostname = None
    job.started_at = None
    job.claim_seq = None
    requeued = job.cancel_requested_at is None
    if requeued:
        job.state = JobState.QUEUED
        record(session, job, "released", now, worker=hostname, reason="handed back unstarted")
    else:
        why = f"cancelled before it ran (handed back unstarted by {hostname})"
        _end(job, JobState.CANCELLED, None, why, now)
        record(session, job, "cancelled", now, worker=hostname, reason=why)
    job.attempt -= 1
    return requeued


def _join(*parts: str | None) -> str | None:
    return "; ".join(part for part in parts if part) or None


def _end(job: Job, state: JobState, exit_code: int | None, reason: str | None, now) -> None:
    job.state = state
    job.exit_code = exit_code
    job.reason = reason
    job.finished_at = now


def _requeue(job: Job, delay: float, now: datetime) -> None:
    job.state = JobState.QUEUED
    job.worker_hostname = None
    job.claim_seq = None
    # Set even when due at once: the sweeper announces queues whose jobs just came due.
    job.not_before = now + timedelta(seconds=delay)
    job.cancel_notified = False


def finish(
    session: Session,
    job: Job,
    state: JobState,
    exit_code: int | None,
    reason: str | None,
    now: datetime,
) -> bool:
    """Record how the current attempt ended; True if the job was queued again for a retry.

    An attempt that ends in anything but success after an operator's cancel is cancelled,
    whatever the worker says (the kill is what made it fail).
    """
    hostname = job.worker_hostname
    if state == JobState.SUCCESS:
        _end(job, JobState.SUCCESS, exit_code, reason, now)
        record(session, job, "succeeded", now, exit_code=exit_code, reason=reason)
        return False
    if state == JobState.CANCELLED or job.cancel_requested_at is not None:
        _end(job, JobState.CANCELLED, exit_code, f"cancelled while running on {hostname}", now)
        record(session, job, "cancelled", now, exit_code=exit_code, reason=job.reason)
        return False
    decision = after_failure(job.attempt, job.retries, job.retry_delay)
    note = _join(reason, decision.note)
    _end(job, JobState.FAILED, exit_code, note, now)
    if decision.retry:
        job.finished_at = None
        _requeue(job, decision.delay, now)
    record(session, job, "failed", now, worker=hostname, exit_code=exit_code, reason=note)
    return decision.retry


def refuse(session: Session, job: Job, why: str, now: datetime) -> None:
    """A job that cannot run at all (its secret env cannot be opened) fails at once, with no
    retry: another attempt could not go differently."""
    _end(job, JobState.FAILED, None, why, now)
    job.not_before = None
    record(session, job, "failed", now, reason=why)


def lose(session: Session, job: Job, why: str, now: datetime) -> bool:
    """The current attempt's worker is gone: retry at once if allowed, else fail (or cancel).

    True if the job was queued again.
    """
    hostname = job.worker_hostname
    if job.cancel_requested_at is not None:
        _end(job, JobState.CANCELLED, None, f"cancelled ({why})", now)
        record(session, job, "lost", now, reason=job.reason)
        return False
    decision = after_failure(job.attempt, job.retries, job.retry_delay, immediate=True)
    note = _join(why, decision.note)
    _end(job, JobState.FAILED, None, note, now)
    if decision.retry:
        job.finished_at = None
        _requeue(job, 0.0, now)
    record(session, job, "lost", now, worker=hostname, reason=note)
    return decision.retry


def lose_running_jobs(session: Session, hostname: str, why: str, now: datetime) -> list[str]:
    """Every job still running on ``hostname`` is lost; returns the queues of re-queued ones."""
    jobs = session.scalars(
        select(Job)
        .where(Job.worker_hostname == hostname, Job.state == JobState.RUNNING)
        .order_by(Job.id)
        .with_for_update()
    ).all()
    return [job.queue for job in jobs if lose(session, job, why, now)]


def cancel(session: Session, job: Job, actor: str, now: datetime) -> bool:
    """Cancel a queued job at once, or ask the worker of a running one to stop it.

    Returns True if a worker has to be told. The caller refuses finished jobs.
    """
    if job.state == JobState.QUEUED:
        _end(job, JobState.CANCELLED, None, f"cancelled by {actor} before it ran", now)
        job.not_before = None
        record(session, job, "cancelled", now, reason=job.reason, actor=actor)
        return False
    if job.cancel_requested_at is None:
        job.cancel_requested_at = now
        job.cancel_notified = False
        record(session, job, "cancel_requested", now, actor=actor)
    return True


def already_reported(
    session: Session, job_id: int, attempt: int, hostname: str, state: JobState
) -> bool:
    """Whether this attempt's end was recorded from this worker with this outcome before."""
    events = session.scalars(
        select(JobEvent.event).where(
            JobEvent.job_id == job_id,
            JobEvent.attempt == attempt,
            JobEvent.worker_hostname == hostname,
            JobEvent.event.in_(RESULT_EVENTS),
        )
    ).all()
    wanted = {JobState.SUCCESS: "succeeded", JobState.FAILED: "failed"}.get(state, "cancelled")
    # A failure reported after a cancel is recorded as cancelled.
    return wanted in events or (state == JobState.FAILED and "cancelled" in events)


def ever_held(session: Session, job_id: int, hostname: str) -> bool:
    """Whether ``hostname`` ever started an attempt of the job: a worker that never did has
    no business reporting on it (403), unlike one whose attempt is merely stale (409)."""
    return (
        session.scalar(
            select(JobEvent.id)
            .where(
                JobEvent.job_id == job_id,
                JobEvent.worker_hostname == hostname,
                JobEvent.event == "started",
            )
            .limit(1)
        )
        is not None
    )
