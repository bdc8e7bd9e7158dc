"""The one writer of job state: every transition, each with its history event in the same
transaction, and the guard that refuses it from a state it may not leave.

==========  =================  =========================================  ================
transition  from (the guard)   to                                         history event
==========  =================  =========================================  ================
submit      (a new row)        queued, attempt 0                          submitted
start       queued and due     running on the claiming worker, attempt+1  started
finish      running            success                                    succeeded
                               failed, or queued again (after the retry   failed
                               delay) if it has retries left
                               cancelled if the worker says so, or if a   cancelled
                               cancel was asked for and it did not succeed
release     running            queued, the attempt given back; cancelled  released /
                               if a cancel was asked for (it never ran)   cancelled
lose        running            queued at once if it has retries left,     lost
                               else failed; cancelled if one was asked
refuse      queued, running    failed, no retry (its secret env cannot    failed
                               be opened: another attempt could not
                               differ)
cancel      queued             cancelled                                  cancelled
cancel      running            running, cancel requested (its worker      cancel_requested
                               stops it; the run ends cancelled)
cancel      cancelled          unchanged: a repeated cancel is harmless   (none)
==========  =================  =========================================  ================

Any other pair is refused with ``TransitionRefused`` (409): a finished job is never started,
released, lost or finished again, and nothing leads out of ``cancelled``. Who may ask for a
transition (the ``(worker, attempt)`` fence, the claim's ``seq``) is checked by the caller,
``dispatch``; what the job's state allows is checked here, on every path.

The ORM helpers work inside a caller's transaction on a job row the caller has locked; the
hot paths (``submit``, ``start``, ``succeed``) are prebuilt multi-row statements on a
caller's connection, guarded in their ``WHERE`` by the same table. Transitions hand back the
wake-ups they call for (``events``), for the caller to pass on after it commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import Connection, bindparam, insert, or_, select, update
from sqlalchemy.orm import Session

from edgefleet.contract import JobAssignment, JobState
from edgefleet.db.models import Job, JobEvent
from edgefleet.db.types import UTCDateTime
from edgefleet.errors import Conflict
from edgefleet.server.events import JobsQueued, Wake, WorkerChanged, requeued
from edgefleet.server.services import caps
from edgefleet.server.services.policy import after_failure
from edgefleet.server.services.reports import ResultReport


class Transition(StrEnum):
    SUBMIT = "submit"
    START = "start"
    FINISH = "finish"
    RELEASE = "release"
    LOSE = "lose"
    REFUSE = "refuse"
    CANCEL = "cancel"


_QUEUED, _RUNNING = frozenset({JobState.QUEUED}), frozenset({JobState.RUNNING})
#: The guard of each transition: the states it may start from (the table above).
ALLOWED_FROM: dict[Transition, frozenset[JobState]] = {
    Transition.SUBMIT: frozenset(),
    Transition.START: _QUEUED,
    Transition.FINISH: _RUNNING,
    Transition.RELEASE: _RUNNING,
    Transition.LOSE: _RUNNING,
    Transition.REFUSE: _QUEUED | _RUNNING,
    Transition.CANCEL: _QUEUED | _RUNNING,
}


class JobEventName(StrEnum):
    """What a job's history records (``JobEvent.event``, shown as is by the API)."""

    SUBMITTED = "submitted"
    STARTED = "started"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    CANCEL_REQUESTED = "cancel_requested"
    RELEASED = "released"
    LOST = "lost"
    LATE_RESULT_REFUSED = "late_result_refused"
    LOG_TRUNCATED = "log_truncated"


#: History events that record how an attempt ended (what makes a report a duplicate).
RESULT_EVENTS = frozenset({JobEventName.SUCCEEDED, JobEventName.FAILED, JobEventName.CANCELLED})


class TransitionRefused(Conflict):
    """The job's state does not allow this transition (409)."""


def may(state: str, transition: Transition) -> bool:
    return state in ALLOWED_FROM[transition]


def _guard(job: Job, transition: Transition) -> None:
    if not may(job.state, transition):
        raise TransitionRefused(f"job {job.id} is {job.state}; it cannot {transition}")


def _allowed(transition: Transition):
    """The guard as a ``WHERE`` clause, for the multi-row statements (comparisons, not an
    ``IN`` list, which a statement run for many rows at once cannot hold)."""
    states = sorted(state.value for state in ALLOWED_FROM[transition])
    return or_(*(Job.__table__.c.state == state for state in states))


def record(
    session: Session,
    job: Job,
    event: JobEventName,
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
            event=event.value,
            state=job.state,
            attempt=job.attempt if attempt is None else attempt,
            worker_hostname=worker if worker is not None else job.worker_hostname,
            exit_code=exit_code,
            reason=reason,
            actor=actor,
        )
    )


# --- the hot paths: prebuilt multi-row statements ---------------------------------------------

_job, _event = Job.__table__, JobEvent.__table__
_NOW = bindparam("now", type_=UTCDateTime())
#: Inserts a batch of jobs in one statement and returns their ids in the order given.
_INSERT_JOBS = insert(_job).returning(_job.c.id, sort_by_parameter_order=True)


def due(now):
    """Queued jobs that may start at ``now`` (a datetime or a bind parameter): not waiting
    out a retry delay."""
    return or_(Job.not_before.is_(None), Job.not_before <= now)


def startable(now):
    """The start guard as a ``WHERE`` clause: queued and due."""
    return _allowed(Transition.START) & due(now)


def submit(connection: Connection, rows: list[dict], actor: str | None, now: datetime) -> list[int]:
    """Queue new jobs (``rows`` hold what was asked for): two statements however many, the
    jobs then their history. Returns their ids in the order given."""
    fresh = {"state": JobState.QUEUED.value, "attempt": 0, "queued_at": now}
    ids = list(connection.scalars(_INSERT_JOBS, [row | fresh for row in rows]))
    history = [
        {
            "job_id": job_id,
            "at": now,
            "event": JobEventName.SUBMITTED.value,
            "state": JobState.QUEUED.value,
            "attempt": 0,
            "actor": actor,
        }
        for job_id in ids
    ]
    connection.execute(insert(_event), history)
    return ids


_START = (
    update(_job)
    .where(_job.c.id == bindparam("job"), startable(_NOW))
    .values(
        state=JobState.RUNNING.value,
        worker_hostname=bindparam("worker"),
        attempt=bindparam("run_attempt"),
        claim_seq=bindparam("seq"),
        started_at=_NOW,
        finished_at=None,
        exit_code=None,
        reason=None,
        not_before=None,
    )
)
_STARTED = insert(_event).values(
    job_id=bindparam("job"),
    at=_NOW,
    event=JobEventName.STARTED.value,
    state=JobState.RUNNING.value,
    attempt=bindparam("run_attempt"),
    worker_hostname=bindparam("worker"),
)


def start(
    connection: Connection,
    claimed: Sequence[JobAssignment],
    hostname: str,
    seq: int | None,
    now: datetime,
) -> None:
    """Start the claimed runs on ``hostname``: two statements however many. The caller read
    them under lock with ``startable``; a run the guard refuses all the same (a bug) refuses
    the whole claim."""
    if not claimed:
        return
    base = {"worker": hostname, "seq": seq, "now": now}
    runs = [base | {"job": job.id, "run_attempt": job.attempt} for job in claimed]
    started = connection.execute(_START, runs).rowcount
    if started != len(runs):
        raise TransitionRefused("a claimed job was no longer queued; nothing was claimed")
    connection.execute(_STARTED, runs)


_FINISHED = bindparam("finished", type_=UTCDateTime())
_SUCCEED = (
    update(_job)
    .where(
        _job.c.id == bindparam("job"),
        _job.c.worker_hostname == bindparam("worker"),
        _job.c.attempt == bindparam("run_attempt"),
        _allowed(Transition.FINISH),
    )
    .values(
        state=JobState.SUCCESS.value,
        exit_code=bindparam("code"),
        reason=bindparam("why"),
        finished_at=_FINISHED,
    )
)
_SUCCEEDED = insert(_event).values(
    job_id=bindparam("job"),
    at=_FINISHED,
    event=JobEventName.SUCCEEDED.value,
    state=JobState.SUCCESS.value,
    attempt=bindparam("run_attempt"),
    worker_hostname=bindparam("worker"),
    exit_code=bindparam("code"),
    reason=bindparam("why"),
)
#: The runs a group of results names, locked in id order (two groups never deadlock), each
#: with its queue if a worker waits for a place under its cap (``caps.BOUND_QUEUE``).
_RUNS = (
    select(_job.c.id, _job.c.worker_hostname, _job.c.attempt, _job.c.state, caps.BOUND_QUEUE)
    .where(_job.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(_job.c.id)
    .with_for_update(of=_job)
)


def succeed(
    connection: Connection, reports: Sequence[ResultReport], now: datetime
) -> tuple[list[bool], tuple[JobsQueued, ...]]:
    """The common end of a run, for a group of successes: three statements however many.
    For each report whether it was recorded (False for one this path does not record: the
    run is not the reporter's current one, or the job was named twice, for ``finish`` and
    the caller's checks to judge alone), and the wake-ups for the places the recorded runs
    freed under bound caps (read with the runs: no statement of their own)."""
    params = [
        {
            "job": report.job_id,
            "worker": report.hostname,
            "run_attempt": report.result.attempt,
            "code": report.result.exit_code,
            "why": report.result.reason,
            "finished": now,
        }
        for report in reports
    ]
    ids = [p["job"] for p in params]
    runs = {run.id: run for run in connection.execute(_RUNS, {"ids": ids})}
    recorded, ended = [], []
    for p in params:
        run = runs.pop(p["job"], None)  # a job named twice: the second is judged alone
        ok = (
            run is not None
            and may(run.state, Transition.FINISH)
            and run.worker_hostname == p["worker"]
            and run.attempt == p["run_attempt"]
        )
        recorded.append(ok)
        if ok:
            ended.append(run)
    succeeded = [p for p, ok in zip(params, recorded, strict=True) if ok]
    if succeeded:
        connection.execute(_SUCCEED, succeeded)
        connection.execute(_SUCCEEDED, succeeded)
    return recorded, caps.freed(ended)


# --- one job at a time, through the ORM -------------------------------------------------------


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
    job.finished_at = None
    # Set even when due at once: the sweeper announces queues whose jobs just came due.
    job.not_before = now + timedelta(seconds=delay)
    job.cancel_notified = False


def release(session: Session, job: Job, now: datetime) -> tuple[Wake, ...]:
    """A claimed job handed back unstarted: the attempt is given back too, and the job is
    queued again; a job whose cancel was asked for ends cancelled instead (it never ran)."""
    _guard(job, Transition.RELEASE)
    hostname = job.worker_hostname
    job.worker_hostname = None
    job.started_at = None
    job.claim_seq = None
    back = job.cancel_requested_at is None
    if back:
        job.state = JobState.QUEUED
        why = "handed back unstarted"
        record(session, job, JobEventName.RELEASED, now, worker=hostname, reason=why)
    else:
        why = f"cancelled before it ran (handed back unstarted by {hostname})"
        _end(job, JobState.CANCELLED, None, why, now)
        record(session, job, JobEventName.CANCELLED, now, worker=hostname, reason=why)
    job.attempt -= 1
    return (JobsQueued(job.queue),) if back else ()


def finish(
    session: Session,
    job: Job,
    state: JobState,
    exit_code: int | None,
    reason: str | None,
    now: datetime,
) -> tuple[Wake, ...]:
    """Record how the current attempt ended; a failure with retries left queues the job again.

    An attempt that ends in anything but success after an operator's cancel is cancelled,
    whatever the worker says (the kill is what made it fail).
    """
    _guard(job, Transition.FINISH)
    hostname = job.worker_hostname
    if state == JobState.SUCCESS:
        _end(job, JobState.SUCCESS, exit_code, reason, now)
        record(session, job, JobEventName.SUCCEEDED, now, exit_code=exit_code, reason=reason)
        return ()
    if state == JobState.CANCELLED or job.cancel_requested_at is not None:
        _end(job, JobState.CANCELLED, exit_code, f"cancelled while running on {hostname}", now)
        record(session, job, JobEventName.CANCELLED, now, exit_code=exit_code, reason=job.reason)
        return ()
    decision = after_failure(job.attempt, job.retries, job.retry_delay)
    note = _join(reason, decision.note)
    _end(job, JobState.FAILED, exit_code, note, now)
    if decision.retry:
        _requeue(job, decision.delay, now)
    failed = JobEventName.FAILED
    record(session, job, failed, now, worker=hostname, exit_code=exit_code, reason=note)
    return (JobsQueued(job.queue),) if decision.retry else ()


def refuse(session: Session, job: Job, why: str, now: datetime) -> None:
    """A job that cannot run at all (its secret env cannot be opened) fails at once, with no
    retry: another attempt could not go differently."""
    _guard(job, Transition.REFUSE)
    _end(job, JobState.FAILED, None, why, now)
    job.not_before = None
    record(session, job, JobEventName.FAILED, now, reason=why)


def lose(session: Session, job: Job, why: str, now: datetime) -> tuple[Wake, ...]:
    """The current attempt's worker is gone: retry at once if allowed, else fail (or cancel)."""
    _guard(job, Transition.LOSE)
    hostname = job.worker_hostname
    if job.cancel_requested_at is not None:
        _end(job, JobState.CANCELLED, None, f"cancelled ({why})", now)
        record(session, job, JobEventName.LOST, now, reason=job.reason)
        return ()
    decision = after_failure(job.attempt, job.retries, job.retry_delay, immediate=True)
    note = _join(why, decision.note)
    _end(job, JobState.FAILED, None, note, now)
    if decision.retry:
        _requeue(job, 0.0, now)
    record(session, job, JobEventName.LOST, now, worker=hostname, reason=note)
    return (JobsQueued(job.queue),) if decision.retry else ()


def lose_running_jobs(
    session: Session, hostname: str, why: str, now: datetime
) -> tuple[JobsQueued, ...]:
    """Every job still running on ``hostname`` is lost (its worker restarted, was revoked or
    removed); wake-ups for the queues that got one back."""
    jobs = session.scalars(
        select(Job)
        .where(Job.worker_hostname == hostname, _allowed(Transition.LOSE))
        .order_by(Job.id)
        .with_for_update()
    ).all()
    back = [wake for job in jobs for wake in lose(session, job, why, now)]
    return requeued(wake.queue for wake in back if isinstance(wake, JobsQueued))


def cancel(session: Session, job: Job, actor: str, now: datetime) -> tuple[Wake, ...]:
    """Cancel a queued job at once, or ask the worker of a running one to stop it (a wake-up
    for that worker). Cancelling a cancelled job again changes nothing."""
    if job.state == JobState.CANCELLED:
        return ()
    if not may(job.state, Transition.CANCEL):
        raise TransitionRefused(f"job {job.id} already ended as {job.state}; nothing to cancel")
    if job.state == JobState.QUEUED:
        _end(job, JobState.CANCELLED, None, f"cancelled by {actor} before it ran", now)
        job.not_before = None
        record(session, job, JobEventName.CANCELLED, now, reason=job.reason, actor=actor)
        return ()
    if job.cancel_requested_at is None:
        job.cancel_requested_at = now
        job.cancel_notified = False
        record(session, job, JobEventName.CANCEL_REQUESTED, now, actor=actor)
    return (WorkerChanged(job.worker_hostname),)


def mark_cancels_sent(jobs: Sequence[Job]) -> None:
    """The workers of these runs were told to stop them (heartbeats repeat it anyway)."""
    for job in jobs:
        job.cancel_notified = True


# --- what the history says --------------------------------------------------------------------


def already_reported(
    session: Session, job_id: int, attempt: int, hostname: str, state: JobState
) -> bool:
    """Whether this attempt's end was recorded from this worker with this outcome before."""
    events = session.scalars(
        select(JobEvent.event).where(
            JobEvent.job_id == job_id,
            JobEvent.attempt == attempt,
            JobEvent.worker_hostname == hostname,
            JobEvent.event.in_([event.value for event in RESULT_EVENTS]),
        )
    ).all()
    wanted = {JobState.SUCCESS: JobEventName.SUCCEEDED, JobState.FAILED: JobEventName.FAILED}
    expected = wanted.get(state, JobEventName.CANCELLED)
    # A failure reported after a cancel is recorded as cancelled.
    return expected in events or (state == JobState.FAILED and JobEventName.CANCELLED in events)


def ever_held(session: Session, job_id: int, hostname: str) -> bool:
    """Whether ``hostname`` ever started an attempt of the job: a worker that never did has
    no business reporting on it (403), unlike one whose attempt is merely stale (409)."""
    return (
        session.scalar(
            select(JobEvent.id)
            .where(
                JobEvent.job_id == job_id,
                JobEvent.worker_hostname == hostname,
                JobEvent.event == JobEventName.STARTED.value,
            )
            .limit(1)
        )
        is not None
    )
