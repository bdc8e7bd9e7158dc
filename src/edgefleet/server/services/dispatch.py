"""The worker side of jobs: claims, results, hand-backs, log chunks and cancel orders.

Every call a worker makes about a job names the attempt it ran; ``(worker, attempt)`` is the
fence that tells the run the server counts on from a stale one (a run re-queued while its
worker was out of touch). Repeated calls are harmless: a fetch is idempotent by its ``seq``,
a result by its attempt, a log chunk by ``(attempt, seq)``.

This module checks who is asking (the fence); every change of a job's state it asks
``lifecycle`` for, which also says whom to wake (``events``).
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import Connection, Row, and_, bindparam, exists, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from edgefleet import fleet_rules
from edgefleet.contract import (
    FINISHED_JOB_STATES,
    DesiredState,
    JobAssignment,
    JobCancel,
    JobRelease,
    JobResult,
    JobState,
    LogChunk,
)
from edgefleet.db.models import Job, JobLogChunk, Worker
from edgefleet.db.session import Sessions
from edgefleet.db.types import UTCDateTime, utcnow
from edgefleet.errors import (
    Conflict,
    EdgefleetError,
    Forbidden,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
)
from edgefleet.server.events import Outcome, Wake
from edgefleet.server.secret_env import UNREADABLE, EnvSealer, SecretEnvUnreadable
from edgefleet.server.services import caps, lifecycle
from edgefleet.server.services.lifecycle import JobEventName, Transition
from edgefleet.server.services.reports import ResultReport
from edgefleet.server.services.workers import DESIRED_COLUMNS, desired_state, refusal

log = logging.getLogger(__name__)

OPERATOR_CANCEL = "cancelled by an operator"
#: The log cap when the caller gives none (the server passes its setting).
DEFAULT_LOG_MAX_BYTES = 10 * 1024 * 1024
#: Attempt bound for cancelling a run of a job that no longer exists (purged).
ANY_ATTEMPT = 2**31 - 1


def _assignment(job: Job | Row, sealer: EnvSealer | None) -> JobAssignment:
    """What the claiming worker is told: the only place secret env values are opened.
    Raises ``SecretEnvUnreadable`` if they were sealed under another signing secret."""
    env = dict(job.env or {})
    if job.secret_env:
        if sealer is None:
            raise ValueError(f"job {job.id} has secret env values and no sealer was given")
        env.update(sealer.open(job.secret_env))
    return JobAssignment(
        id=job.id,
        attempt=job.attempt,
        command=job.command,
        queue=job.queue,
        slots=job.slots,
        env=env,
        cwd=job.cwd,
        timeout=job.timeout,
    )


# The claim's statements, built once: every fetch runs them (Core, no ORM session).
_worker = Worker.__table__
_job = Job.__table__
_ASSIGNED = [
    _job.c[name]
    for name in ("id", "command", "queue", "slots", "env", "secret_env", "cwd", "timeout")
]
_LOCK_WORKER = (
    select(
        _worker.c.hostname,
        _worker.c.instance_id,
        _worker.c.fetch_seq,
        _worker.c.revoked_at,
        *DESIRED_COLUMNS,
    )
    .where(_worker.c.hostname == bindparam("hostname"))
    .with_for_update()
)
_NEXT_FETCH = (
    update(_worker)
    .where(_worker.c.hostname == bindparam("worker"))
    .values(fetch_seq=bindparam("seq"))
)
_RUNNING_HERE = and_(
    _job.c.worker_hostname == bindparam("hostname"), _job.c.state == JobState.RUNNING.value
)
_SLOTS_IN_USE = select(func.coalesce(func.sum(_job.c.slots), 0)).where(_RUNNING_HERE)
#: The worker's slots in use and the caps of its queues, locked (``caps``)...
_IN_USE_AND_CAPS = caps.with_locked_caps(_SLOTS_IN_USE.scalar_subquery())
#: ...or not, for a claim that locks them late (``caps.lock_late``).
_IN_USE_AND_CAPS_UNLOCKED = caps.with_locked_caps(_SLOTS_IN_USE.scalar_subquery(), lock=False)
_CLAIMED_BY = (
    select(*_ASSIGNED, _job.c.attempt)
    .where(_RUNNING_HERE, _job.c.claim_seq == bindparam("seq"))
    .order_by(_job.c.priority.desc(), _job.c.id)
)
_STARTABLE = lifecycle.startable(bindparam("now", type_=UTCDateTime()))
_FITS_BUDGET = _job.c.slots <= bindparam("budget")
_CANDIDATES = (
    select(*_ASSIGNED, (_job.c.attempt + 1).label("attempt"), _job.c.priority)
    .where(_STARTABLE, _job.c.queue.in_(bindparam("queues", expanding=True)), _FITS_BUDGET)
    .order_by(_job.c.priority.desc(), _job.c.id)
    .limit(bindparam("take"))
    .with_for_update(skip_locked=True)
)
#: The same for one capped queue, each row with the queue's running jobs: counted after the
#: cap's lock, in the read the claim makes anyway.
_CAPPED_CANDIDATES = (
    select(
        *_ASSIGNED,
        (_job.c.attempt + 1).label("attempt"),
        _job.c.priority,
        caps.running_of(bindparam("capped")).label("running"),
    )
    .where(_STARTABLE, _job.c.queue == bindparam("capped"), _FITS_BUDGET)
    .order_by(_job.c.priority.desc(), _job.c.id)
    .limit(bindparam("take"))
    .with_for_update(skip_locked=True, of=_job)
)
#: The running jobs of one capped queue, counted before its candidates are read when its cap
#: binds (a full one then costs no read of candidates).
_RUNNING_OF = select(caps.running_of(bindparam("capped")))


def claim(
    db: Sessions,
    hostname: str,
    instance_id: str,
    free_slots: int,
    seq: int | None = None,
    sealer: EnvSealer | None = None,
) -> tuple[list[JobAssignment], DesiredState]:
    """Hand queued jobs to a worker, never beyond its central concurrency.

    The worker row is locked first, so claims for one worker are serialised and the count of
    its running jobs cannot change underneath; other workers' claims skip rows locked here.
    A repeated ``seq`` answers with the jobs that fetch claimed; an older one claims nothing.
    ``sealer`` opens secret env values; a job whose values it cannot open fails instead.
    """
    try:
        return _claim(db, hostname, instance_id, free_slots, seq, sealer, late=True)
    except caps.Overrun:  # a cap filled up under a claim that locked it late: lock it first
        return _claim(db, hostname, instance_id, free_slots, seq, sealer, late=False)


def _claim(
    db: Sessions,
    hostname: str,
    instance_id: str,
    free_slots: int,
    seq: int | None,
    sealer: EnvSealer | None,
    late: bool,
) -> tuple[list[JobAssignment], DesiredState]:
    """One claim in one transaction; ``late``: lock unbound caps after starting the jobs, if
    this database lets claims run side by side (``caps``)."""
    with db.writer.begin() as connection:
        worker = connection.execute(_LOCK_WORKER, {"hostname": hostname}).one_or_none()
        refused = refusal(worker, hostname, instance_id)
        if refused is not None:
            raise refused
        desired = desired_state(worker)
        if seq is not None:
            if seq < worker.fetch_seq:
                return [], desired
            if seq == worker.fetch_seq:
                rows = connection.execute(_CLAIMED_BY, {"hostname": hostname, "seq": seq})
                again, _ = _take(connection, rows, MAX_SLOTS, sealer)
                return again, desired
            connection.execute(_NEXT_FETCH, {"worker": hostname, "seq": seq})
        if not fleet_rules.accepts_work(
            maintenance=desired.maintenance, shutting_down=desired.shutdown, free_slots=free_slots
        ):
            return [], desired
        late = late and caps.lock_late(connection)
        head = connection.execute(
            _IN_USE_AND_CAPS_UNLOCKED if late else _IN_USE_AND_CAPS,
            {"hostname": hostname, "queues": desired.queues},
        ).all()
        budget = fleet_rules.slot_budget(free_slots, desired.concurrency, head[0].in_use)
        if budget <= 0:
            return [], desired
        capped = caps.locked(head)
        if late and any(cap.bound for cap in capped.values()):  # likely full: lock them now
            capped = caps.locked(connection.execute(caps.LOCK, {"queues": list(capped)}).all())
            late = False
        now = utcnow()
        rows, room = _candidates(connection, desired.queues, capped, budget, now)
        claimed, left = _take(connection, rows, budget, sealer, room)
        lifecycle.start(connection, claimed, hostname, seq, now)
        taken = [job.queue for job in claimed]
        if late:
            caps.commit_late(connection, capped, taken)
        else:
            caps.note_bound(connection, room, taken, worker_full=left <= 0)
        return claimed, desired


def _candidates(
    connection: Connection,
    queues: list[str],
    capped: dict[str, caps.Cap],
    budget: int,
    now: datetime,
) -> tuple[list[Row], caps.Room]:
    """Queued jobs the claim may take, in claim order, and the room it found under the caps:
    at most ``budget`` from the uncapped queues (one statement, as without caps), and from
    each capped queue one statement, whose rows say how many of its jobs run; ``_take``
    keeps no more than its room, so a full capped queue never crowds out the others' jobs.
    Under a bound cap the running jobs are counted first: it is likely full."""
    params = {"budget": budget, "now": now}
    uncapped = [queue for queue in queues if queue not in capped]
    rows: list[Row] = []
    room = caps.Room(bound={queue for queue, cap in capped.items() if cap.bound})
    if uncapped:
        rows += connection.execute(_CANDIDATES, params | {"queues": uncapped, "take": budget})
    for queue, cap in capped.items():
        take = min(budget, cap.concurrency)
        if cap.bound:  # likely full: count first, and read no candidates when it is
            left = cap.concurrency - connection.scalar(_RUNNING_OF, {"capped": queue})
            room[queue] = max(0, left)
            if left <= 0:
                continue
            take = min(take, left)
        found = connection.execute(_CAPPED_CANDIDATES, params | {"capped": queue, "take": take})
        found = found.all()
        if found and queue not in room:
            room[queue] = max(0, cap.concurrency - found[0].running)
        rows += found
    if capped and len(queues) > 1:
        rows.sort(key=lambda row: (-row.priority, row.id))
    return rows, room


#: More slots than any worker has: a budget that never runs out.
MAX_SLOTS = 2**31 - 1


def _take(
    connection: Connection,
    rows,
    budget: int,
    sealer: EnvSealer | None,
    room: dict[str, int] | None = None,
) -> tuple[list[JobAssignment], int]:
    """Assignments for the rows that fit in ``budget`` slots (and, for a capped queue, in
    its ``room``), in order, and the budget left. A job whose secret env cannot be opened
    fails on the spot instead (it never could run) and is not handed out."""
    claimed: list[JobAssignment] = []
    unreadable: list[int] = []
    room = dict(room or {})
    for job in rows:
        if job.slots > budget or room.get(job.queue, 1) <= 0:
            continue
        try:
            claimed.append(_assignment(job, sealer))
        except SecretEnvUnreadable:
            unreadable.append(job.id)
            continue
        budget -= job.slots
        if job.queue in room:
            room[job.queue] -= 1
    if unreadable:
        _fail_unreadable(connection, unreadable)
    return claimed, budget


def _fail_unreadable(connection: Connection, job_ids: list[int]) -> None:
    """Rare (only after the signing secret changed), so through the ORM and ``lifecycle``
    inside the claim's own transaction."""
    now = utcnow()
    with Session(bind=connection) as session:
        for job_id in job_ids:
            job = session.get(Job, job_id)
            if job is not None:
                lifecycle.refuse(session, job, UNREADABLE, now)
                log.warning("job %d: failed: %s", job_id, UNREADABLE)
        session.flush()


def has_queued(db: sessionmaker[Session], queues: list[str], max_slots: int) -> bool:
    """Whether a queued job that is due on ``queues`` would fit in ``max_slots`` free slots."""
    with db() as session:
        return queued_job_fits(session, queues, max_slots)


#: A due queued job on one of ``queues`` fits in ``free_slots``, and its queue's cap (if any)
#: is not full. Built once, the long-poll asks it on every look: caps cost it no statement
#: of their own.
_QUEUED_WORK = select(
    exists().where(
        _STARTABLE,
        Job.queue.in_(bindparam("queues", expanding=True)),
        Job.slots <= bindparam("free_slots"),
        Job.queue.not_in(caps.FULL_AMONG),
    )
)


def queued_job_fits(db: Session | Connection, queues: list[str], max_slots: int) -> bool:
    """Whether a job could start now on ``queues`` in ``max_slots`` free slots: a due
    queued one fits, outside full caps."""
    if not queues:
        return False
    params = {"queues": queues, "free_slots": max_slots, "now": utcnow()}
    return bool(db.scalar(_QUEUED_WORK, params))


def _lock_job(session: Session, job_id: int) -> Job:
    job = session.get(Job, job_id, with_for_update=True)
    if job is None:
        raise NotFound(f"no job {job_id}")
    return job


def _holds(job: Job, hostname: str, attempt: int) -> bool:
    return job.worker_hostname == hostname and job.attempt == attempt


def _refuse_stranger(session: Session, job: Job, hostname: str) -> None:
    """A worker may report only on jobs it ran: another worker's job is 403, not 409."""
    if job.worker_hostname != hostname and not lifecycle.ever_held(session, job.id, hostname):
        raise Forbidden(f"job {job.id} is not held by worker {hostname!r}")


#: How one report was judged: recorded (with the wake-ups a retry calls for), or refused.
Answer = Outcome[None] | EdgefleetError
_RECORDED: Outcome[None] = Outcome(None)


def report_result(db: Sessions, job_id: int, hostname: str, result: JobResult) -> Outcome[None]:
    """Record how an attempt ended; a retry's queue is woken.

    A repeated report is a no-op; a report for an attempt that is no longer current is
    refused (409) and noted in the job's history, so a late result is never recorded twice.
    """
    (answer,) = report_results(db, [ResultReport(job_id, hostname, result)])
    if isinstance(answer, EdgefleetError):
        raise answer
    return answer


def report_results(db: Sessions, reports: list[ResultReport]) -> list[Answer]:
    """``report_result`` for many reports, each answered on its own: recorded, or the error
    reporting it alone would raise. Successes, the common case, are recorded together in one
    transaction of three statements however many; anything else (and a success whose run
    is not the reporter's current one: a repeat, or a late report) takes a transaction of
    its own."""
    now = utcnow()
    answers: list[Answer] = [_RECORDED] * len(reports)
    successes = [i for i, (_, _, result) in enumerate(reports) if result.state == JobState.SUCCESS]
    done: set[int] = set()
    if successes:
        with db.writer.begin() as connection:
            recorded, freed = lifecycle.succeed(connection, [reports[i] for i in successes], now)
            done = {i for i, ok in zip(successes, recorded, strict=True) if ok}
        if freed:  # the same wake-ups on each answer: the caller announces them once
            for i in done:
                answers[i] = Outcome(None, freed)
    for i, (job_id, hostname, result) in enumerate(reports):
        if i in done:
            continue
        try:
            answers[i] = Outcome(None, _report_in_full(db, job_id, hostname, result, now))
        except EdgefleetError as exc:
            answers[i] = exc
    return answers


def _report_in_full(
    db: sessionmaker[Session], job_id: int, hostname: str, result: JobResult, now: datetime
) -> tuple[Wake, ...]:
    if result.state not in FINISHED_JOB_STATES:
        raise InvalidRequest(f"a result must be one of {sorted(FINISHED_JOB_STATES)}")
    with db.begin() as session:
        job = _lock_job(session, job_id)
        if _holds(job, hostname, result.attempt) and lifecycle.may(job.state, Transition.FINISH):
            wake = lifecycle.finish(
                session, job, result.state, result.exit_code, result.reason, now
            )
            return wake + caps.freed_in(session, [job.queue])
        if lifecycle.already_reported(session, job_id, result.attempt, hostname, result.state):
            return ()
        _refuse_stranger(session, job, hostname)
        current = f"the job is {job.state} at attempt {job.attempt}" + (
            f" on {job.worker_hostname}" if job.worker_hostname else ""
        )
        lifecycle.record(
            session,
            job,
            JobEventName.LATE_RESULT_REFUSED,
            now,
            attempt=result.attempt,
            worker=hostname,
            exit_code=result.exit_code,
            reason=f"{result.state} ({result.reason or 'exit 0'}) arrived after {current}",
        )
    log.warning(
        "job %d: refused the result of attempt %d from %s (%s): %s",
        job_id,
        result.attempt,
        hostname,
        result.state,
        current,
    )
    raise Conflict(
        f"job {job_id} attempt {result.attempt} is no longer held by worker {hostname!r} "
        f"({current}); its result was not recorded"
    )


def release(
    db: sessionmaker[Session], job_id: int, hostname: str, request: JobRelease
) -> Outcome[None]:
    """Put a claimed, never-started job back in its queue (and wake it); a job cancelled
    meanwhile ends instead."""
    with db.begin() as session:
        job = _lock_job(session, job_id)
        held = _holds(job, hostname, request.attempt)
        held = held and lifecycle.may(job.state, Transition.RELEASE)
        if not held:
            _refuse_stranger(session, job, hostname)
        if not held or (request.seq is not None and job.claim_seq != request.seq):
            raise Conflict(f"job {job_id} attempt {request.attempt} is not held by {hostname!r}")
        wake = lifecycle.release(session, job, utcnow())
        return Outcome(None, wake or caps.freed_in(session, [job.queue]))


def truncation_notice(max_bytes: int) -> str:
    return (
        f"\n[edgefleet: log truncated: this job's output passed the limit of {max_bytes} bytes; "
        "further output was discarded]\n"
    )


def push_log(
    db: sessionmaker[Session],
    job_id: int,
    hostname: str,
    chunk: LogChunk,
    max_bytes: int = DEFAULT_LOG_MAX_BYTES,
) -> None:
    """Store one chunk (once). Past ``max_bytes`` in all, a notice is stored once and the
    chunk is refused with 413; the job itself is not affected."""
    with db.begin() as session:
        job = _lock_job(session, job_id)
        if session.get(JobLogChunk, (job_id, chunk.attempt, chunk.seq)) is not None:
            return
        if not _holds(job, hostname, chunk.attempt):
            _refuse_stranger(session, job, hostname)
            raise Conflict(f"job {job_id} attempt {chunk.attempt} is not held by {hostname!r}")
        size = len(chunk.data.encode())
        over = job.log_bytes + size > max_bytes
        if over and not job.log_truncated:
            job.log_truncated = True
            session.add(_chunk(job_id, chunk.attempt, chunk.seq, truncation_notice(max_bytes)))
            lifecycle.record(
                session,
                job,
                JobEventName.LOG_TRUNCATED,
                utcnow(),
                reason=f"output passed {max_bytes} bytes",
            )
        elif not over:
            job.log_bytes += size
            session.add(_chunk(job_id, chunk.attempt, chunk.seq, chunk.data))
    if over:
        raise PayloadTooLarge(
            f"job {job_id}'s log passed its limit of {max_bytes} bytes; further output is "
            "discarded (the job keeps running)"
        )


def _chunk(job_id: int, attempt: int, seq: int, data: str) -> JobLogChunk:
    return JobLogChunk(job_id=job_id, attempt=attempt, seq=seq, data=data, created_at=utcnow())


# --- cancel orders ----------------------------------------------------------------------------


def _requested_on(worker_clause):
    return and_(worker_clause, Job.state == JobState.RUNNING, Job.cancel_requested_at.is_not(None))


def cancel_orders(session: Session, running: dict[str, list[int]]) -> dict[str, list[JobCancel]]:
    """Runs each worker must stop, given the job ids it reports running: operator cancels
    of its jobs, and runs the server no longer counts on (re-queued, finished elsewhere, or
    purged). One query for all the workers of a group of heartbeats."""
    ids = [job_id for jobs in running.values() for job_id in jobs]
    hostnames = list(running)
    jobs = session.scalars(
        select(Job).where(or_(Job.id.in_(ids), _requested_on(Job.worker_hostname.in_(hostnames))))
    ).all()
    by_id = {job.id: job for job in jobs}
    requested: dict[str, list[Job]] = {}
    for job in jobs:
        if job.state == JobState.RUNNING and job.cancel_requested_at is not None:
            requested.setdefault(job.worker_hostname, []).append(job)
    return {
        hostname: _orders(hostname, reported, by_id, requested.get(hostname, []))
        for hostname, reported in running.items()
    }


def _orders(
    hostname: str, running: list[int], by_id: dict[int, Job], requested: list[Job]
) -> list[JobCancel]:
    orders = [
        JobCancel(id=job.id, attempt=job.attempt, reason=OPERATOR_CANCEL) for job in requested
    ]
    for job_id in sorted(set(running)):
        job = by_id.get(job_id)
        if job is None:
            orders.append(
                JobCancel(
                    id=job_id,
                    attempt=ANY_ATTEMPT,
                    reason="the job no longer exists",
                    requested=False,
                )
            )
        elif job.worker_hostname != hostname or job.state != JobState.RUNNING:
            orders.append(
                JobCancel(
                    id=job.id,
                    attempt=job.attempt,
                    reason=f"this run is no longer current (the job is {job.state})",
                    requested=False,
                )
            )
    return sorted(orders, key=lambda order: order.id)


def has_new_cancels(db: Session | Connection, hostname: str) -> bool:
    """Whether an operator cancelled a run of ``hostname`` it has not been told of yet."""
    return bool(db.scalar(_NEW_CANCEL, {"hostname": hostname}))


def with_new_cancels(connection: Connection, hostnames: list[str]) -> set[str]:
    """Which of ``hostnames`` have operator cancels they were not told of yet: one query for
    a group of long-polls (a fleet-wide change wakes them all at once)."""
    if not hostnames:
        return set()
    query = (
        select(Job.worker_hostname).where(_fresh_cancel(Job.worker_hostname.in_(hostnames)))
    ).distinct()
    return {name for name in connection.scalars(query) if name is not None}


def take_new_cancels(db: sessionmaker[Session], hostname: str) -> list[JobCancel]:
    """For the long-poll: operator cancels not yet sent to the worker, marked as sent.

    Heartbeats repeat every pending cancel, so one lost answer only delays it.
    """
    with db() as session:
        if not has_new_cancels(session, hostname):
            return []
    with db.begin() as session:
        fresh = _fresh_cancel(Job.worker_hostname == hostname)
        query = select(Job).where(fresh).with_for_update(skip_locked=True)
        jobs = session.scalars(query).all()
        lifecycle.mark_cancels_sent(jobs)
        return [JobCancel(id=job.id, attempt=job.attempt, reason=OPERATOR_CANCEL) for job in jobs]


def _fresh_cancel(worker_clause):
    """Operator cancels of the workers ``worker_clause`` names, not told to them yet."""
    return and_(_requested_on(worker_clause), Job.cancel_notified.is_(False))


_NEW_CANCEL = select(exists().where(_fresh_cancel(Job.worker_hostname == bindparam("hostname"))))
