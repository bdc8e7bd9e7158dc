"""Queue depth against a real database: queued and running jobs per queue in one query,
the age of the oldest queued job, and a worker's slots in use."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import update

from edgefleet.contract import JobSubmit, Registration
from edgefleet.db.models import Job
from edgefleet.db.types import utcnow
from edgefleet.server.services import dispatch, jobs, queues, workers

OFFLINE = 5.0


def register(db, hostname: str, queue: str, concurrency: int = 8) -> str:
    instance = uuid.uuid4().hex
    reg = Registration(
        instance_id=instance, concurrency=concurrency, queues=[queue], heartbeat_interval=1
    )
    workers.register(db, hostname, reg, OFFLINE)
    return instance


def submit(db, queue: str, slots: int = 1) -> int:
    return jobs.submit(db, JobSubmit(command=["true"], queue=queue, slots=slots), "tester")


def test_queues_count_queued_and_running_jobs_and_the_oldest_wait(session_factory):
    db = session_factory
    assert queues.list_queues(db) == []
    instance = register(db, "w1", "build")
    running = [submit(db, "build", slots=2), submit(db, "build", slots=3)]
    claimed, _ = dispatch.claim(db, "w1", instance, 5, seq=1)
    assert sorted(a.id for a in claimed) == running
    waiting = [submit(db, "build"), submit(db, "gpu"), submit(db, "gpu")]
    cancelled = submit(db, "archive")
    jobs.cancel(db, cancelled, "tester")  # a finished job weighs on no queue
    now = utcnow()
    with db.begin() as session:  # the first gpu job has waited 90 s
        session.execute(
            update(Job).where(Job.id == waiting[1]).values(queued_at=now - timedelta(seconds=90))
        )

    listed = {q.queue: q for q in queues.list_queues(db, now)}
    assert sorted(listed) == ["build", "gpu"]
    assert (listed["build"].queued, listed["build"].running) == (1, 2)
    assert (listed["gpu"].queued, listed["gpu"].running) == (2, 0)
    assert 90 <= listed["gpu"].oldest_queued_age_seconds < 100
    assert listed["build"].oldest_queued_age_seconds < 90

    (view,) = workers.list_workers(db, OFFLINE)
    assert (view.jobs_running, view.slots_used) == (2, 5)
    assert workers.show_worker(db, "w1", OFFLINE).slots_used == 5


def test_a_queue_with_only_running_jobs_has_no_oldest_wait(session_factory):
    db = session_factory
    instance = register(db, "w2", "solo")
    submit(db, "solo")
    dispatch.claim(db, "w2", instance, 1, seq=1)
    (only,) = queues.list_queues(db)
    assert (only.queue, only.queued, only.running) == ("solo", 0, 1)
    assert only.oldest_queued_age_seconds is None
