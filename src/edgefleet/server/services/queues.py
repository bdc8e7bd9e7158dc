"""Queues as operators see them: how many jobs wait and run in each, and its cap."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from edgefleet import fleet_rules
from edgefleet.contract import JobState, QueueView
from edgefleet.db.models import Job, Worker
from edgefleet.db.types import utcnow
from edgefleet.server.services import caps

#: The states a queue's depth is made of; finished jobs no longer weigh on a queue.
_OPEN_STATES = (JobState.QUEUED, JobState.RUNNING)
_COUNTS = (
    select(Job.queue, Job.state, func.count(Job.id), func.min(Job.queued_at))
    .where(Job.state.in_(_OPEN_STATES))
    .group_by(Job.queue, Job.state)
)
_SERVED = select(Worker.queues_override, Worker.flag_queues)


def list_queues(db: sessionmaker[Session], now: datetime | None = None) -> list[QueueView]:
    """Every queue that holds a queued or running job, has a cap, or a worker serves, by
    name. A job waiting for a retry counts as queued (it is, until it runs again)."""
    with db() as session:
        rows = session.execute(_COUNTS).all()
        capped = caps.caps(session)
        served = {
            queue
            for override, flag in session.execute(_SERVED)
            for queue in fleet_rules.effective(override, flag)
        }
    now = now or utcnow()
    counts: dict[str, dict[str, int]] = {queue: {} for queue in served | set(capped)}
    oldest: dict[str, datetime] = {}
    for queue, state, count, first in rows:
        counts.setdefault(queue, {})[state] = count
        if state == JobState.QUEUED:
            oldest[queue] = first
    return [
        QueueView(
            queue=queue,
            queued=by_state.get(JobState.QUEUED, 0),
            running=by_state.get(JobState.RUNNING, 0),
            oldest_queued_age_seconds=_age(oldest.get(queue), now),
            oldest_queued_at=oldest.get(queue),
            cap=capped.get(queue),
        )
        for queue, by_state in sorted(counts.items())
    ]


def _age(moment: datetime | None, now: datetime) -> float | None:
    if moment is None:
        return None
    return max(0.0, (now - moment).total_seconds())
