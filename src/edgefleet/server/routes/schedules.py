"""Admin API for schedules: windows of time in which label groups run at a concurrency.

Reading them takes a viewer token, adding and removing them an operator's; every change is
audited (on ``schedule:NAME`` and on the workers whose concurrency it moves) and wakes
those workers as any control change does.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from edgefleet.contract import SCHEDULE_NAME_PATTERN, ScheduleChange, ScheduleCreate, ScheduleView
from edgefleet.server.deps import ContextDep, OperatorDep, ViewerDep
from edgefleet.server.services import schedules

router = APIRouter(prefix="/schedules", tags=["schedules"])


@router.get("", response_model=list[ScheduleView])
def list_schedules(context: ContextDep, identity: ViewerDep):
    return schedules.list_schedules(context.db)


@router.post("", response_model=ScheduleChange, status_code=201)
def add_schedule(body: ScheduleCreate, context: ContextDep, identity: OperatorDep):
    """Add a schedule; if its window is open now, the workers it matches adopt it at once."""
    per_cpu = context.settings.max_concurrency_per_cpu
    return context.settle(schedules.add(context.db, body, identity.subject, per_cpu))


@router.delete("/{name}", response_model=ScheduleChange)
def remove_schedule(
    context: ContextDep,
    identity: OperatorDep,
    name: Annotated[str, Path(max_length=63, pattern=SCHEDULE_NAME_PATTERN)],
):
    """Remove a schedule: the workers its open window decided for fall to the next layer."""
    return context.settle(schedules.remove(context.db, name, identity.subject))
