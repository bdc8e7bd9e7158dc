"""Admin API for jobs: submit, list, inspect, read logs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from edgefleet.contract import JobCreated, JobLogView, JobState, JobSubmit, JobView
from edgefleet.server.deps import AdminDep, ContextDep
from edgefleet.server.services import jobs

router = APIRouter(prefix="/jobs", tags=["jobs"])


@router.post("", response_model=JobCreated, status_code=201)
def submit(body: JobSubmit, context: ContextDep, identity: AdminDep):
    job_id = jobs.submit(context.db, body)
    context.notifier.job_queued(body.queue)
    return JobCreated(id=job_id)


@router.get("", response_model=list[JobView])
def list_jobs(
    context: ContextDep,
    identity: AdminDep,
    state: JobState | None = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
    offset: Annotated[int, Query(ge=0)] = 0,
):
    return jobs.list_jobs(context.db, state, limit, offset)


@router.get("/{job_id}", response_model=JobView)
def show(job_id: int, context: ContextDep, identity: AdminDep):
    return jobs.get_job(context.db, job_id)


@router.get("/{job_id}/logs", response_model=JobLogView)
def logs(job_id: int, context: ContextDep, identity: AdminDep):
    return JobLogView(id=job_id, log=jobs.job_log(context.db, job_id))
