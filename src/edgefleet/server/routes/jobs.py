"""Admin API for jobs: submit, list, inspect (with history), cancel, read or follow logs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from edgefleet.contract import (
    DB_INT_MAX,
    JobBatch,
    JobCreated,
    JobDetail,
    JobLogView,
    JobsCreated,
    JobState,
    JobStatus,
    JobStatusQuery,
    JobSubmit,
    JobView,
    QueueName,
)
from edgefleet.server.deps import ContextDep, OperatorDep, ViewerDep
from edgefleet.server.params import BeforeQuery, CountQuery, JobIdPath, LogCursorQuery
from edgefleet.server.services import jobs

router = APIRouter(prefix="/jobs", tags=["jobs"])


@router.post("", response_model=JobCreated, status_code=201)
async def submit(body: JobSubmit, context: ContextDep, identity: OperatorDep):
    (job_id,) = await context.act(
        jobs.submit_many, context.db, [body], identity.subject, context.sealer
    )
    return JobCreated(id=job_id)


@router.post("/batch", response_model=JobsCreated, status_code=201)
async def submit_batch(body: JobBatch, context: ContextDep, identity: OperatorDep):
    """Up to 1000 jobs in one transaction; ids in the order given."""
    ids = await context.act(
        jobs.submit_many, context.db, body.jobs, identity.subject, context.sealer
    )
    return JobsCreated(ids=ids)


@router.post("/status", response_model=list[JobStatus])
def status(body: JobStatusQuery, context: ContextDep, identity: ViewerDep):
    """Where many jobs stand, by id and/or key, in one request (up to 10,000 names); jobs
    not found are left out. A key names every job submitted with it."""
    return jobs.statuses(context.db, body.ids, body.keys)


@router.get("", response_model=list[JobView])
def list_jobs(
    context: ContextDep,
    identity: ViewerDep,
    state: JobState | None = None,
    queue: QueueName | None = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
    offset: CountQuery = 0,
    before: BeforeQuery = None,
):
    """Jobs, newest first; pass the last id of a page as ``before`` for the next (older) one.
    Queued jobs say why they wait (``waiting_reason``) when it is more than their turn: a
    retry not yet due, no live worker for the queue, too many slots."""
    offline = context.settings.worker_offline_timeout
    return jobs.list_jobs(context.db, state, limit, offset, offline, queue, before)


@router.get("/{job_id}", response_model=JobDetail)
def show(job_id: JobIdPath, context: ContextDep, identity: ViewerDep):
    """One job with its full history: every state change, attempt, worker and reason."""
    return jobs.get_job(context.db, job_id, context.settings.worker_offline_timeout)


@router.post("/{job_id}/cancel", response_model=JobView)
def cancel(job_id: JobIdPath, context: ContextDep, identity: OperatorDep):
    """A queued job is cancelled at once; a running one is stopped by its worker, which is
    told at once (it ends ``cancelled``). A job that already ended otherwise: 409."""
    return context.settle(jobs.cancel(context.db, job_id, identity.subject))


@router.get("/{job_id}/logs", response_model=JobLogView)
def logs(
    job_id: JobIdPath,
    context: ContextDep,
    identity: ViewerDep,
    cursor: LogCursorQuery = None,
    attempt: Annotated[int | None, Query(ge=1, le=DB_INT_MAX)] = None,
):
    """The job's output; pass the returned ``cursor`` back to get only what came since."""
    return jobs.job_log(context.db, job_id, cursor, attempt)
