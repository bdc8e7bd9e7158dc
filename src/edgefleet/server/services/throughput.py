"""Throughput: how many jobs of each queue finished (success or failed) in each minute.

One grouped query over a bounded window of ``finished_at``, read off the index on
``(finished_at, queue, state)`` alone, so its cost follows the jobs finished in the window,
not the size of the job table. A cancelled job is no throughput and is not counted.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import BigInteger, ColumnElement, func, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.functions import FunctionElement

from edgefleet.contract import JobState, QueueThroughput, ThroughputView
from edgefleet.db.models import Job
from edgefleet.db.types import utcnow

MINUTE = timedelta(minutes=1)
_COUNTED = (JobState.SUCCESS.value, JobState.FAILED.value)


class minute_of(FunctionElement[int]):  # noqa: N801 (a SQL function, named as one)
    """The minute a UTC timestamp column falls in, as whole minutes since the epoch."""

    type = BigInteger()
    inherit_cache = True


@compiles(minute_of, "sqlite")
def _minute_sqlite(element: minute_of, compiler, **kw) -> str:
    column = compiler.process(element.clauses, **kw)
    return f"(CAST(strftime('%s', {column}) AS INTEGER) / 60)"


@compiles(minute_of)
def _minute_default(element: minute_of, compiler, **kw) -> str:
    # A naive timestamp's epoch is its nominal value: the column holds UTC.
    column = compiler.process(element.clauses, **kw)
    return f"CAST(floor(extract(epoch FROM {column}) / 60) AS BIGINT)"


def _query(start: datetime, end: datetime):
    """Counts per minute, queue and state. The states are sorted out afterwards: a condition
    on ``state`` here would tempt a planner to the claim index (every finished job ever)."""
    minute: ColumnElement[int] = minute_of(Job.finished_at)
    return (
        select(minute, Job.queue, Job.state, func.count())
        .where(Job.finished_at >= start, Job.finished_at < end)
        .group_by(minute, Job.queue, Job.state)
    )


def window_start(now: datetime, minutes: int) -> datetime:
    """The start of the first of ``minutes`` whole minutes that end with the current one."""
    this_minute = now.astimezone(UTC).replace(second=0, microsecond=0)
    return this_minute - (minutes - 1) * MINUTE


def throughput(
    db: sessionmaker[Session], minutes: int, now: datetime | None = None
) -> ThroughputView:
    """Per queue, the jobs that finished in each of the last ``minutes`` minutes."""
    start = window_start(now or utcnow(), minutes)
    first = int(start.timestamp()) // 60
    with db() as session:
        rows = session.execute(_query(start, start + minutes * MINUTE)).all()
    counts: dict[str, dict[str, list[int]]] = {}
    for minute, queue, state, count in rows:
        index = int(minute) - first
        # Cancelled jobs are no throughput; the range check only guards the edges.
        if state not in _COUNTED or not 0 <= index < minutes:
            continue
        per_state = counts.setdefault(queue, {s: [0] * minutes for s in _COUNTED})
        per_state[state][index] += count
    return ThroughputView(
        start=start,
        minutes=minutes,
        queues=[
            QueueThroughput(queue=queue, success=by[JobState.SUCCESS], failed=by[JobState.FAILED])
            for queue, by in sorted(counts.items())
        ],
    )
