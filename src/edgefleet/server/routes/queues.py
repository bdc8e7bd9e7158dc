"""Admin API for queues: their depth (queued and running jobs) and fleet-wide caps."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from edgefleet.contract import (
    MAX_THROUGHPUT_MINUTES,
    QueueCapChange,
    QueueCapRequest,
    QueueView,
    ThroughputView,
)
from edgefleet.parsing import MAX_QUEUE_NAME, QUEUE_NAME_PATTERN
from edgefleet.server.deps import ContextDep, OperatorDep, ViewerDep
from edgefleet.server.services import caps, queues, throughput

router = APIRouter(prefix="/queues", tags=["queues"])

#: A queue's name in a path, refused (422) unless a job could be queued on it.
QueuePath = Annotated[
    str, Path(min_length=1, max_length=MAX_QUEUE_NAME, pattern=QUEUE_NAME_PATTERN)
]


@router.get("", response_model=list[QueueView])
def list_queues(context: ContextDep, identity: ViewerDep):
    """Each queue that holds queued or running jobs, has a cap or is served by a worker:
    how many jobs of each, the age in seconds of its oldest queued job, and its cap."""
    return queues.list_queues(context.db)


@router.get("/throughput", response_model=ThroughputView)
def queue_throughput(
    context: ContextDep,
    identity: ViewerDep,
    minutes: Annotated[int, Query(ge=1, le=MAX_THROUGHPUT_MINUTES)] = 60,
):
    """Jobs finished (success and failed) per minute and queue over the last ``minutes``
    minutes, the current one last; queues that finished none in the window are left out."""
    return throughput.throughput(context.db, minutes)


@router.put("/{name}", response_model=QueueCapChange)
def set_queue_cap(
    name: QueuePath, body: QueueCapRequest, context: ContextDep, identity: OperatorDep
):
    """Cap the queue's running jobs across the fleet (``{"concurrency": N}``), or lift the
    cap (``{"reset": true}``); audited as ``queue_concurrency`` of ``queue:<name>``."""
    return context.settle(caps.set_cap(context.db, name, body, identity.subject))
