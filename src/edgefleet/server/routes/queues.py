"""Admin API for queues: their depth (queued and running jobs) at a glance."""

from __future__ import annotations

from fastapi import APIRouter

from edgefleet.contract import QueueView
from edgefleet.server.deps import ContextDep, ViewerDep
from edgefleet.server.services import queues

router = APIRouter(prefix="/queues", tags=["queues"])


@router.get("", response_model=list[QueueView])
def list_queues(context: ContextDep, identity: ViewerDep):
    """Each queue holding queued or running jobs: how many of each, and the age in seconds
    of its oldest queued job."""
    return queues.list_queues(context.db)
