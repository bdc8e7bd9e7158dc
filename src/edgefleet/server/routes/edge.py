"""The worker API: the only channel a worker has, always opened by the worker."""

from __future__ import annotations

import random
import time
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import TypeAdapter

from edgefleet.aio import wait_event
from edgefleet.auth import JOIN_TOKEN_PREFIX
from edgefleet.contract import (
    ControlRequest,
    CredentialIssued,
    DesiredState,
    EnrollRequest,
    FetchRequest,
    FetchResponse,
    Heartbeat,
    Hostname,
    JobCancel,
    JobRelease,
    JobResult,
    LocalMaintenance,
    LogChunk,
    Registration,
    ReportedResult,
    ResultBatch,
    ResultOutcome,
    ResultOutcomes,
    WakeReason,
    WatchQuery,
    WorkerContact,
)
from edgefleet.db.types import utcnow
from edgefleet.errors import EdgefleetError, InvalidRequest, Unauthorized
from edgefleet.server.context import ServerContext
from edgefleet.server.deps import (
    WORKER,
    ContextDep,
    HostnamePath,
    WorkerDep,
    bearer_token,
    own_hostname,
)
from edgefleet.server.events import WorkerChanged
from edgefleet.server.params import JobIdPath, read_path, read_query, request_parameters
from edgefleet.server.services import control, credentials, dispatch, workers
from edgefleet.server.services import watch as watch_service
from edgefleet.server.services.heartbeats import Beat
from edgefleet.server.services.reports import ResultReport
from edgefleet.server.services.workers import Ack

router = APIRouter(prefix="/edge", tags=["worker API"])
#: A worker's name in a path read by the route itself (``HostnamePath`` for the others).
WORKER_NAME = TypeAdapter(Hostname)


def _contact(
    desired: DesiredState,
    cancel: list[JobCancel] | None = None,
    reason: WakeReason | None = None,
) -> WorkerContact:
    return WorkerContact(desired=desired, server_time=utcnow(), cancel=cancel or [], reason=reason)


JoinTokenDep = Annotated[
    HTTPAuthorizationCredentials | None,
    Depends(
        HTTPBearer(
            scheme_name="JoinToken",
            description="A join token from `edgefleet token create-join`",
            auto_error=False,
        )
    ),
]


@router.post("/enroll", response_model=CredentialIssued, status_code=201)
async def enroll(body: EnrollRequest, context: ContextDep, join: JoinTokenDep):
    """Exchange a join token (as bearer token) for a credential of the worker's own, bound
    to ``hostname``. 401 for an unknown, expired or used-up join token; 409 for a hostname
    that is enrolled already."""
    if join is None or not join.credentials.startswith(JOIN_TOKEN_PREFIX):
        raise Unauthorized(
            "enrolling needs a join token: create one with `edgefleet token "
            "create-join` and send it as the bearer token"
        )
    ttl = context.settings.credential_ttl
    issued = await context.run(credentials.enroll, context.db, join.credentials, body.hostname, ttl)
    return CredentialIssued(
        hostname=issued.name, credential=issued.token, expires_at=issued.expires_at
    )


@router.post("/workers/{hostname}/credential", response_model=CredentialIssued, status_code=201)
async def rotate_credential(
    hostname: HostnamePath, request: Request, context: ContextDep, identity: WorkerDep
):
    """A fresh credential for the worker; the one it called with stops working a few
    minutes later. Workers do this by themselves before their credential expires."""
    own_hostname(identity, hostname)
    if identity.source != "credential":
        raise InvalidRequest("only a worker enrolled with a join token has a credential to rotate")
    ttl = context.settings.credential_ttl
    issued = await context.run(credentials.rotate, context.db, hostname, bearer_token(request), ttl)
    return CredentialIssued(
        hostname=issued.name, credential=issued.token, expires_at=issued.expires_at
    )


@router.post("/workers/{hostname}/register", response_model=WorkerContact)
async def register(
    hostname: HostnamePath, body: Registration, context: ContextDep, identity: WorkerDep
):
    own_hostname(identity, hostname)
    timeout = context.settings.worker_offline_timeout
    desired = await context.run(workers.register, context.db, hostname, body, timeout)
    return _contact(desired)


@router.post("/workers/{hostname}/heartbeat", response_model=WorkerContact)
async def heartbeat(
    hostname: HostnamePath, body: Heartbeat, context: ContextDep, identity: WorkerDep
):
    own_hostname(identity, hostname)
    answer = await context.beats.submit(Beat(hostname, body))
    return _contact(answer.desired, answer.cancel)


@router.get(
    "/workers/{hostname}/watch",
    response_model=WorkerContact,
    openapi_extra=request_parameters({"hostname": WORKER_NAME}, WatchQuery),
)
async def watch(request: Request) -> Response:
    """Long-poll: answers as soon as the desired state moves past ``version``, or a queued job
    on one of the worker's queues fits in ``free_slots``, or one of its jobs is cancelled, or
    after about ``timeout`` seconds; ``reason`` says which.

    ``applied_version``, ``applied_concurrency`` and ``state`` acknowledge what the worker
    applied, as a heartbeat would: recorded with the long-poll's first look, before it
    waits, so the acknowledgement of a change needs no request of its own.

    A fleet-wide change brings every worker here at once, so this route reads its request
    itself (the token, as ``WorkerDep`` checks it, then ``hostname`` and ``WatchQuery``) and
    answers with the JSON already made: FastAPI's handling of the parameters, dependencies
    and answer was most of its cost."""
    identity = await WORKER(request)
    hostname = read_path(request, "hostname", WORKER_NAME)
    own_hostname(identity, hostname)
    query = read_query(WatchQuery, request)
    contact = await _watch(request.app.state.context, hostname, query)
    return Response(contact.model_dump_json(), media_type="application/json")


async def _watch(context: ServerContext, hostname: str, query: WatchQuery) -> WorkerContact:
    ack = _ack(hostname, query)
    notifier, recheck = context.notifier, context.watch_recheck
    ask = watch_service.Ask(hostname, query.instance_id, query.version, query.free_slots, ack)
    # Up to 10 % early, so long-polls that started together drift apart.
    hold = min(query.timeout, context.settings.watch_timeout) * random.uniform(0.9, 1.0)
    deadline = time.monotonic() + hold
    with notifier.subscribe(hostname, query.free_slots) as waiter:
        while not waiter.replaced:
            waiter.event.clear()  # before the look: a wake-up during it is not lost
            seen = await context.looks.submit(ask)  # also records the acknowledgement
            ask = ask._replace(ack=None)
            notifier.follow(waiter, seen.desired.queues)
            if seen.reason is not None:
                return _contact(seen.desired, seen.cancel, seen.reason)
            if notifier.closing:
                return _contact(seen.desired, reason=WakeReason.CLOSING)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return _contact(seen.desired, reason=WakeReason.TIMEOUT)
            await wait_event(waiter.event, min(remaining, recheck or remaining))
            news = waiter.news
            if news is not None and news.version > ask.version:  # handed over: no look
                return _contact(news, reason=WakeReason.CHANGED)
    return _contact(seen.desired, reason=WakeReason.REPLACED)


def _ack(hostname: str, query: WatchQuery) -> Ack | None:
    version, concurrency, state = query.applied_version, query.applied_concurrency, query.state
    if version is None and concurrency is None and state is None:
        return None
    if version is None or concurrency is None or state is None:
        raise InvalidRequest("give applied_version, applied_concurrency and state, or none")
    return Ack(hostname, query.instance_id, version, concurrency, state)


@router.post("/workers/{hostname}/maintenance", response_model=WorkerContact)
def local_maintenance(
    hostname: HostnamePath, body: LocalMaintenance, context: ContextDep, identity: WorkerDep
):
    """``edgefleet worker maintenance on|off`` on the worker's machine, recorded centrally.
    Rare, so a plain sync route."""
    own_hostname(identity, hostname)
    with context.db() as session:
        workers.check_instance(workers.get_worker(session, hostname), body.instance_id)
    actor = f"worker:{hostname} (local)"
    if body.maintenance:
        comments = body.comments or "maintenance switched on at the worker"
        change = {"action": "request-maintenance", "comments": comments}
    else:
        change = {"action": "exit-maintenance"}
    request = ControlRequest.model_validate(
        {"target": {"edge_hostname": hostname}, "change": change}
    )
    changes = control.change_workers(context.db, request, actor)
    context.notifier.announce(control.wake_ups(changes) or [WorkerChanged(hostname)])
    return _contact(workers.current_desired(context.db, hostname, body.instance_id))


@router.post("/workers/{hostname}/fetch", response_model=FetchResponse)
async def fetch(
    hostname: HostnamePath, body: FetchRequest, context: ContextDep, identity: WorkerDep
):
    own_hostname(identity, hostname)
    claimed, desired = await context.run(
        dispatch.claim,
        context.db,
        hostname,
        body.instance_id,
        body.free_slots,
        body.seq,
        sealer=context.sealer,
    )
    return FetchResponse(jobs=claimed, desired=desired)


@router.post("/jobs/{job_id}/result", status_code=204)
async def report_result(
    job_id: JobIdPath, body: JobResult, context: ContextDep, identity: WorkerDep
):
    """Idempotent per (job, attempt); 409 for an attempt that is no longer current."""
    await context.results.submit(ResultReport(job_id, identity.subject, body))


@router.post("/workers/{hostname}/results", response_model=ResultOutcomes)
async def report_results(
    hostname: HostnamePath, body: ResultBatch, context: ContextDep, identity: WorkerDep
):
    """Many results in one request, each judged as ``/jobs/{id}/result`` would judge it
    alone; one outcome per result, in order. A failure of the server itself (5xx) answers
    the whole request, which is safe to repeat."""
    own_hostname(identity, hostname)
    reports = [ResultReport(result.job_id, hostname, result) for result in body.results]
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
async def release(job_id: JobIdPath, body: JobRelease, context: ContextDep, identity: WorkerDep):
    await context.act(dispatch.release, context.db, job_id, identity.subject, body)


@router.post("/jobs/{job_id}/logs", status_code=204)
async def push_log(job_id: JobIdPath, body: LogChunk, context: ContextDep, identity: WorkerDep):
    """Idempotent per (attempt, seq); 413 once the job's log reached its size limit."""
    limit = context.settings.job_log_max_bytes
    await context.run(dispatch.push_log, context.db, job_id, identity.subject, body, limit)
