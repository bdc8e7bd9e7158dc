"""The worker API: the only channel a worker has, always opened by the worker."""

from __future__ import annotations

import random
import time
from typing import Annotated

from fastapi import APIRouter, Query

from edgefleet.aio import wait_event
from edgefleet.contract import (
    DesiredState,
    FetchRequest,
    FetchResponse,
    Heartbeat,
    JobCancel,
    JobRelease,
    JobResult,
    LocalMaintenance,
    LogChunk,
    MaintenanceRequest,
    Registration,
    ReportedResult,
    ResultBatch,
    ResultOutcome,
    ResultOutcomes,
    Target,
    WakeReason,
    WorkerContact,
)
from edgefleet.db.types import utcnow
from edgefleet.errors import EdgefleetError
from edgefleet.server.context import ServerContext
from edgefleet.server.deps import ContextDep, WorkerDep, own_hostname
from edgefleet.server.services import control, dispatch, workers
from edgefleet.server.services import watch as watch_service
from edgefleet.settings import MAX_CONCURRENCY

router = APIRouter(prefix="/edge", tags=["worker API"])


def _contact(
    desired: DesiredState,
    cancel: list[JobCancel] | None = None,
    reason: WakeReason | None = None,
) -> WorkerContact:
    return WorkerContact(desired=desired, server_time=utcnow(), cancel=cancel or [], reason=reason)


@router.post("/workers/{hostname}/register", response_model=WorkerContact)
async def register(hostname: str, body: Registration, context: ContextDep, identity: WorkerDep):
    own_hostname(identity, hostname)
    timeout = context.settings.worker_offline_timeout
    desired = await context.run(workers.register, context.db, hostname, body, timeout)
    return _contact(desired)


@router.post("/workers/{hostname}/heartbeat", response_model=WorkerContact)
async def heartbeat(hostname: str, body: Heartbeat, context: ContextDep, identity: WorkerDep):
    own_hostname(identity, hostname)
    desired, orders = await context.beats.submit((hostname, body))
    return _contact(desired, orders)


@router.get("/workers/{hostname}/watch", response_model=WorkerContact)
async def watch(
    hostname: str,
    context: ContextDep,
    identity: WorkerDep,
    instance_id: str,
    version: Annotated[int, Query(ge=0)],
    free_slots: Annotated[int, Query(ge=0, le=MAX_CONCURRENCY)] = 0,
    timeout: Annotated[float, Query(gt=0, le=300)] = 30.0,
):
    """Long-poll: answers as soon as the desired state moves past ``version``, or a queued job
    on one of the worker's queues fits in ``free_slots``, or one of its jobs is cancelled, or
    after about ``timeout`` seconds; ``reason`` says which."""
    own_hostname(identity, hostname)
    notifier, recheck = context.notifier, context.watch_recheck
    # Up to 10 % early, so long-polls that started together drift apart.
    hold = min(timeout, context.settings.watch_timeout) * random.uniform(0.9, 1.0)
    deadline = time.monotonic() + hold
    with notifier.subscribe(hostname, free_slots) as waiter:
        while not waiter.replaced:
            waiter.event.clear()  # before the look: a wake-up during it is not lost
            seen = await context.run(
                watch_service.look, context.db, hostname, instance_id, version, free_slots
            )
            notifier.follow(waiter, seen.desired.queues)
            if seen.reason is not None:
                return _contact(seen.desired, seen.cancel, seen.reason)
            if notifier.closing:
                return _contact(seen.desired, reason=WakeReason.CLOSING)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return _contact(seen.desired, reason=WakeReason.TIMEOUT)
            await wait_event(waiter.event, min(remaining, recheck or remaining))
    return _contact(seen.desired, reason=WakeReason.REPLACED)


@router.post("/workers/{hostname}/maintenance", response_model=WorkerContact)
def local_maintenance(
    hostname: str, body: LocalMaintenance, context: ContextDep, identity: WorkerDep
):
    """``edgefleet worker maintenance on|off`` on the worker's machine, recorded centrally.
    Rare, so a plain sync route."""
    own_hostname(identity, hostname)
    with context.db() as session:
        workers.check_instance(workers.get_worker(session, hostname), body.instance_id)
    actor = f"worker:{hostname} (local)"
    if body.maintenance:
        comments = body.comments or "maintenance switched on at the worker"
        request = MaintenanceRequest(edge_hostname=hostname, comments=comments)
        control.request_maintenance(context.db, request, actor)
    else:
        control.exit_maintenance(context.db, Target(edge_hostname=hostname), actor)
    context.notifier.worker_changed(hostname)
    return _contact(workers.current_desired(context.db, hostname, body.instance_id))


@router.post("/workers/{hostname}/fetch", response_model=FetchResponse)
async def fetch(hostname: str, body: FetchRequest, context: ContextDep, identity: WorkerDep):
    own_hostname(identity, hostname)
    claimed, desired = await context.run(
        dispatch.claim, context.db, hostname, body.instance_id, body.free_slots, body.seq
    )
    return FetchResponse(jobs=claimed, desired=desired)


@router.post("/jobs/{job_id}/result", status_code=204)
async def report_result(job_id: int, body: JobResult, context: ContextDep, identity: WorkerDep):
    """Idempotent per (job, attempt); 409 for an attempt that is no longer current."""
    await context.results.submit((job_id, identity.subject, body))


@router.post("/workers/{hostname}/results", response_model=ResultOutcomes)
async def report_results(
    hostname: str, body: ResultBatch, context: ContextDep, identity: WorkerDep
):
    """Many results in one request, each judged as ``/jobs/{id}/result`` would judge it
    alone; one outcome per result, in order. A failure of the server itself (5xx) answers
    the whole request, which is safe to repeat."""
    own_hostname(identity, hostname)
    reports = [(result.job_id, hostname, result) for result in body.results]
    answers = await context.results.submit_many(reports)
    for answer in answers:
        if isinstance(answer, Exception) and not isinstance(answer, EdgefleetError):
            raise answer
    return ResultOutcomes(outcomes=list(map(_outcome, body.results, answers)))


def _outcome(result: ReportedResult, answer: EdgefleetError | None) -> ResultOutcome:
    if answer is None:
        return ResultOutcome(job_id=result.job_id, attempt=result.attempt, status_code=204)
    return ResultOutcome(
        job_id=result.job_id,
        attempt=result.attempt,
        status_code=answer.status_code,
        error=answer.code,
        detail=answer.message,
    )


@router.post("/jobs/{job_id}/release", status_code=204)
async def release(job_id: int, body: JobRelease, context: ContextDep, identity: WorkerDep):
    await context.run(_release, context, job_id, identity.subject, body)


def _release(context: ServerContext, job_id: int, hostname: str, body: JobRelease) -> None:
    context.notifier.job_queued(dispatch.release(context.db, job_id, hostname, body))


@router.post("/jobs/{job_id}/logs", status_code=204)
async def push_log(job_id: int, body: LogChunk, context: ContextDep, identity: WorkerDep):
    """Idempotent per (attempt, seq); 413 once the job's log reached its size limit."""
    limit = context.settings.job_log_max_bytes
    await context.run(dispatch.push_log, context.db, job_id, identity.subject, body, limit)
